//! Client messages read in place: one decoder and one enum for everything a logged-in client
//! sends, borrowed from the frame (SQL text and parameters are never copied). Bounds are
//! checked on every read; a message that does not have exactly its type's layout, or whose
//! names are not UTF-8, is malformed (`08P01` to the client, as PostgreSQL answers it).

use super::{bind_view, BindView, WireError};

/// One client message (after login).
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Simple-protocol query: its SQL as sent (UTF-8 unless the client encoding says not).
    Query {
        sql: &'a [u8],
    },
    Parse {
        name: &'a str,
        sql: &'a [u8],
        types: Vec<u32>,
    },
    Bind(BindView<'a>),
    /// `target` is `S` (statement) or `P` (portal).
    Describe {
        target: u8,
        name: &'a str,
    },
    Execute {
        portal: &'a str,
        max_rows: i32,
    },
    Close {
        target: u8,
        name: &'a str,
    },
    Sync,
    Flush,
    Terminate,
    CopyData,
    CopyDone,
    CopyFail,
}

/// A cursor over a message body that never reads past its end.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&c| c == 0)?;
        let s = self.take(end + 1)?;
        Some(&s[..end])
    }
    /// A name (statement, portal): `None` when missing, `Some(Err)` when not UTF-8.
    fn name(&mut self) -> Option<Result<&'a str, WireError>> {
        Some(std::str::from_utf8(self.bytes()?).map_err(|_| WireError::NotUtf8))
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// Reads a whole frame (tag and length included).
pub fn decode(frame: &[u8]) -> Result<ClientMessage<'_>, WireError> {
    let (&tag, _) = frame.split_first().ok_or(WireError::Malformed("empty"))?;
    let mut b = Body(frame.get(5..).ok_or(WireError::Malformed("short"))?);
    let what = match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'D' => "Describe",
        b'E' => "Execute",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'd' => return Ok(ClientMessage::CopyData),
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        other => return Err(WireError::UnexpectedType(other as char)),
    };
    read(tag, frame, &mut b).ok_or(WireError::Malformed(what))?
}

/// The message of type `tag` in `b` (the body of `frame`), if it has exactly its layout
/// (`Some(Err(NotUtf8))` when it does but a name is not UTF-8).
fn read<'a>(
    tag: u8,
    frame: &'a [u8],
    b: &mut Body<'a>,
) -> Option<Result<ClientMessage<'a>, WireError>> {
    {
        let m = match tag {
            b'Q' => ClientMessage::Query { sql: b.bytes()? },
            b'P' => {
                let name = b.name()?;
                let name = match name {
                    Ok(n) => n,
                    Err(e) => return Some(Err(e)),
                };
                let sql = b.bytes()?;
                let n = b.take(2)?;
                let n = usize::try_from(i16::from_be_bytes([n[0], n[1]])).ok()?;
                let types = (0..n)
                    .map(|_| b.i32().map(|t| t as u32))
                    .collect::<Option<Vec<_>>>()?;
                ClientMessage::Parse { name, sql, types }
            }
            b'B' => return bind_view(frame).map(|v| Ok(ClientMessage::Bind(v))),
            b'D' | b'C' => {
                let target = b.u8().filter(|t| matches!(t, b'S' | b'P'))?;
                let name = match b.name()? {
                    Ok(n) => n,
                    Err(e) => return Some(Err(e)),
                };
                match tag {
                    b'D' => ClientMessage::Describe { target, name },
                    _ => ClientMessage::Close { target, name },
                }
            }
            b'E' => {
                let portal = match b.name()? {
                    Ok(n) => n,
                    Err(e) => return Some(Err(e)),
                };
                ClientMessage::Execute {
                    portal,
                    max_rows: b.i32()?,
                }
            }
            b'S' => ClientMessage::Sync,
            b'H' => ClientMessage::Flush,
            b'X' => ClientMessage::Terminate,
            b'c' => ClientMessage::CopyDone,
            _ => {
                b.bytes()?;
                ClientMessage::CopyFail
            }
        };
        b.end().map(|()| Ok(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn messages_read_in_place() {
        use ClientMessage::*;
        let cases: &[(u8, &[u8], ClientMessage<'_>)] = &[
            (b'Q', b"SELECT 1\0", Query { sql: b"SELECT 1" }),
            (
                b'P',
                b"s\0SELECT $1\0\0\x01\0\0\0\x17",
                Parse {
                    name: "s",
                    sql: b"SELECT $1",
                    types: vec![23],
                },
            ),
            (
                b'D',
                b"Ss1\0",
                Describe {
                    target: b'S',
                    name: "s1",
                },
            ),
            (
                b'C',
                b"P\0",
                Close {
                    target: b'P',
                    name: "",
                },
            ),
            (
                b'E',
                b"p\0\0\0\0\x05",
                Execute {
                    portal: "p",
                    max_rows: 5,
                },
            ),
            (b'S', b"", Sync),
            (b'f', b"no\0", CopyFail),
        ];
        for (tag, body, want) in cases {
            assert_eq!(
                decode(&frame(*tag, body)).as_ref(),
                Ok(want),
                "{}",
                *tag as char
            );
        }
    }

    #[test]
    fn every_truncation_and_extra_byte_is_malformed() {
        for (tag, body) in [
            (b'Q', &b"SELECT 1\0"[..]),
            (b'P', b"s\0SELECT 1\0\0\x01\0\0\0\x17"),
            (b'B', b"\0s\0\0\x01\0\0\0\x01\0\0\0\x01x\0\0"),
            (b'D', b"Ss1\0"),
            (b'E', b"\0\0\0\0\0"),
        ] {
            assert!(decode(&frame(tag, body)).is_ok(), "{}", tag as char);
            for cut in 0..body.len() {
                let f = frame(tag, &body[..cut]);
                assert!(decode(&f).is_err(), "{} cut at {cut}", tag as char);
            }
            let mut longer = body.to_vec();
            longer.push(b'x');
            assert!(decode(&frame(tag, &longer)).is_err(), "{} + 1", tag as char);
        }
        assert!(decode(&frame(b'D', b"Xs\0")).is_err());
        assert_eq!(decode(&frame(b'D', b"S\xff\0")), Err(WireError::NotUtf8));
        assert!(decode(&frame(b'S', b"x")).is_err());
        assert_eq!(
            decode(&frame(b'y', b"")),
            Err(WireError::UnexpectedType('y'))
        );
    }
}
