//! Message framing and the few messages Orgwall builds itself, on top of pgwire's codec.
//!
//! Frames are split here (tag + length, checked against the configured maximum) so that rows
//! can be forwarded as raw bytes: a `DataRow` is never decoded. Every client message is read
//! in place (`client`: one decoder, one enum, nothing copied); what Orgwall reads from
//! PostgreSQL or produces is decoded/encoded with `pgwire::messages`, except ReadyForQuery and a
//! renamed Bind, written directly.

pub mod client;

use bytes::{Buf, BufMut, BytesMut};
use pgwire::messages::{DecodeContext, Message};

use crate::errors::{code, ClientError, UserFacing};

/// Why a byte stream is not a valid sequence of protocol messages.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message length {len} exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("unexpected message type {0:?}")]
    UnexpectedType(char),
    /// A name in a client message is not UTF-8 (`22021` to the client, as PostgreSQL says).
    #[error("invalid byte sequence for encoding \"UTF8\"")]
    NotUtf8,
}

/// From a client, a malformed stream ends its connection.
impl UserFacing for WireError {
    fn sqlstate(&self) -> &'static str {
        match self {
            WireError::NotUtf8 => code::CHARACTER_NOT_IN_REPERTOIRE,
            _ => code::PROTOCOL_VIOLATION,
        }
    }
    /// A name that is not UTF-8 is an error, as PostgreSQL reports it; the rest breaks the stream.
    fn fatal(&self) -> bool {
        !matches!(self, WireError::NotUtf8)
    }
    fn client_message(&self) -> String {
        format!("invalid message: {self}")
    }
}

/// A message from PostgreSQL longer than `max_message_bytes`: the session ends, its server
/// connection closed mid-answer (the message is never buffered whole).
pub fn answer_too_large(e: &WireError) -> ClientError {
    ClientError::fatal(
        code::PROGRAM_LIMIT_EXCEEDED,
        format!("an answer from PostgreSQL is too large: {e} (max_message_bytes)"),
    )
}

/// Splits one complete tagged message (tag byte + length + body) off the front of `buf`.
/// Returns `Ok(None)` when more bytes are needed.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(WireError::BadLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    if buf.len() < len + 1 {
        buf.reserve(len + 1 - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(len + 1)))
}

/// The complete tagged messages at the front of a buffer, read in place as `(tag, body)`; stops
/// at the first message not all there (or with an impossible length).
pub fn frames(buf: &[u8]) -> Frames<'_> {
    Frames { buf, pos: 0 }
}

/// See [`frames`].
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'a> {
    /// The next complete message, whole (tag and length included).
    pub fn next_whole(&mut self) -> Option<&'a [u8]> {
        let b = &self.buf[self.pos..];
        let len = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize + 1;
        if len < 5 || b.len() < len {
            return None;
        }
        self.pos += len;
        Some(&b[..len])
    }

    /// Bytes of the messages yielded so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// Every byte of the buffer has been yielded as whole messages.
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        self.next_whole().map(|f| (f[0], &f[5..]))
    }
}

/// Splits one untagged startup-phase packet (length + body).
pub fn split_startup(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=max as i32).contains(&len) {
        return Err(WireError::BadLength(len));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(len)))
}

/// Decodes a complete frame with pgwire's codec.
pub fn decode<M: Message>(mut frame: BytesMut, what: &'static str) -> Result<M, WireError> {
    M::decode(&mut frame, &DecodeContext::default())
        .ok()
        .flatten()
        .ok_or(WireError::Malformed(what))
}

/// Encodes a message onto `out`. Our own messages are always small and valid.
pub fn put<M: Message>(out: &mut BytesMut, msg: &M) {
    if let Err(e) = msg.encode(out) {
        tracing::error!(error = %e, "failed to encode a protocol message");
    }
}

/// Appends ReadyForQuery with the given status byte (`I`, `T` or `E`).
pub fn put_ready(out: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' | b'E' => status,
        _ => b'I',
    };
    out.put_slice(&[b'Z', 0, 0, 0, 5, status]);
}

/// Builds a tagged message from a tag and body bytes.
pub fn frame(tag: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u8(tag);
    b.put_i32(body.len() as i32 + 4);
    b.put_slice(body);
    b
}

/// Reads the SQLSTATE (`C` field) out of a raw ErrorResponse/NoticeResponse frame.
pub fn error_code(frame: &[u8]) -> Option<&str> {
    sqlstate(frame.get(5..)?)
}

/// The ErrorResponse `frame` with its SQLSTATE replaced by `code`, every other field as it was.
pub fn with_error_code(frame: &[u8], code: &str) -> BytesMut {
    let mut body = BytesMut::new();
    for (kind, value) in fields(frame.get(5..).unwrap_or_default()) {
        body.put_u8(kind);
        body.extend_from_slice(if kind == b'C' { code.as_bytes() } else { value });
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(frame.first().copied().unwrap_or(b'E'));
    out.put_i32(body.len() as i32 + 4);
    out.extend_from_slice(&body);
    out
}

/// Reads the SQLSTATE (`C` field) out of an ErrorResponse/NoticeResponse body.
pub fn sqlstate(body: &[u8]) -> Option<&str> {
    field(body, b'C')
}

/// Reads field `kind` (`C` SQLSTATE, `n` constraint name, …) out of an ErrorResponse or
/// NoticeResponse body, if it is UTF-8.
pub fn field(body: &[u8], kind: u8) -> Option<&str> {
    field_bytes(body, kind).and_then(|v| std::str::from_utf8(v).ok())
}

/// Field `kind` of an ErrorResponse or NoticeResponse body, as sent.
pub fn field_bytes(body: &[u8], kind: u8) -> Option<&[u8]> {
    fields(body).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// The (kind, value) fields of an ErrorResponse or NoticeResponse body, up to its terminator
/// (or to a field without one).
fn fields(mut body: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&kind, rest) = body.split_first()?;
        let end = rest.iter().position(|&b| b == 0).filter(|_| kind != 0)?;
        body = &rest[end + 1..];
        Some((kind, &rest[..end]))
    })
}

/// The status byte of a raw ReadyForQuery frame.
pub fn ready_status(frame: &[u8]) -> u8 {
    frame.get(5).copied().unwrap_or(b'I')
}

/// Reads the tag of a raw CommandComplete frame.
pub fn command_tag(frame: &[u8]) -> &str {
    let body = frame.get(5..).unwrap_or_default();
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    std::str::from_utf8(&body[..end]).unwrap_or("")
}

/// The fields of a raw DataRow frame as text (`None` for NULL). Only for Orgwall's own
/// housekeeping queries: client rows are never decoded.
pub fn data_row_text(frame: &[u8]) -> Option<Vec<Option<String>>> {
    let mut b = frame.get(5..)?;
    if b.len() < 2 {
        return None;
    }
    let n = b.get_i16();
    let mut fields = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = be_i32(b)?;
        b = &b[4..];
        if len < 0 {
            fields.push(None);
            continue;
        }
        let len = len as usize;
        let v = b.get(..len)?;
        fields.push(Some(String::from_utf8_lossy(v).into_owned()));
        b = &b[len..];
    }
    Some(fields)
}

/// A Bind message read in place, without copying its parameters: what the balance cache
/// needs to answer it (and to check it as PostgreSQL would, `balances::bind`).
#[derive(Debug, PartialEq, Eq)]
pub struct BindView<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub param_formats: Vec<i16>,
    /// A length below −1 reads as NULL here; `bad_length` says one was seen (PostgreSQL
    /// refuses such a Bind, 08P01).
    pub params: Vec<Option<&'a [u8]>>,
    pub bad_length: bool,
    pub result_formats: Vec<i16>,
}

/// Reads a complete Bind frame (tag and length included); `None` unless it is well formed
/// and fully consumed (callers then decode it with pgwire, which reports the error).
pub fn bind_view(frame: &[u8]) -> Option<BindView<'_>> {
    fn cstr<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
        let end = b.iter().position(|&c| c == 0)?;
        let s = std::str::from_utf8(&b[..end]).ok()?;
        *b = &b[end + 1..];
        Some(s)
    }
    fn count(b: &mut &[u8]) -> Option<usize> {
        let n = b.get(..2)?;
        let n = i16::from_be_bytes([n[0], n[1]]);
        *b = &b[2..];
        usize::try_from(n).ok()
    }
    fn codes(b: &mut &[u8], n: usize) -> Option<Vec<i16>> {
        let raw = b.get(..n.checked_mul(2)?)?;
        *b = &b[n * 2..];
        Some(
            raw.chunks_exact(2)
                .map(|c| i16::from_be_bytes([c[0], c[1]]))
                .collect(),
        )
    }
    if frame.first() != Some(&b'B') {
        return None;
    }
    let mut b = frame.get(5..)?;
    let portal = cstr(&mut b)?;
    let statement = cstr(&mut b)?;
    let n = count(&mut b)?;
    let param_formats = codes(&mut b, n)?;
    let n = count(&mut b)?;
    let mut params = Vec::with_capacity(n);
    let mut bad_length = false;
    for _ in 0..n {
        let len = be_i32(b)?;
        b = &b[4..];
        if len < 0 {
            bad_length |= len < -1;
            params.push(None);
        } else {
            let v = b.get(..len as usize)?;
            b = &b[len as usize..];
            params.push(Some(v));
        }
    }
    let n = count(&mut b)?;
    let result_formats = codes(&mut b, n)?;
    b.is_empty().then_some(BindView {
        portal,
        statement,
        param_formats,
        params,
        bad_length,
        result_formats,
    })
}

/// Writes the Bind `frame` (read as `view`) to `out`, its statement renamed to `statement`;
/// everything after the names is copied as it is.
pub fn put_bind_renamed(out: &mut BytesMut, frame: &[u8], view: &BindView<'_>, statement: &str) {
    let rest = &frame[5 + view.portal.len() + 1 + view.statement.len() + 1..];
    let len = 4 + view.portal.len() + 1 + statement.len() + 1 + rest.len();
    out.reserve(1 + len);
    out.put_u8(b'B');
    out.put_i32(len as i32);
    for name in [view.portal, statement] {
        out.put_slice(name.as_bytes());
        out.put_u8(0);
    }
    out.put_slice(rest);
}

/// Reads a big-endian i32 from the start of `b`, if long enough.
pub fn be_i32(mut b: &[u8]) -> Option<i32> {
    (b.len() >= 4).then(|| b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_yields_whole_messages_in_place() {
        let q = frame(b'Q', b"select 1\0");
        let s = frame(b'S', b"");
        let both = [&q[..], &s[..]].concat();
        let mut it = frames(&both);
        assert_eq!(it.next(), Some((b'Q', &b"select 1\0"[..])));
        assert_eq!(it.next(), Some((b'S', &b""[..])));
        assert_eq!(it.next(), None);
        assert!(it.at_end() && it.consumed() == both.len());
        // Cut short, or a length below the header's own four bytes: stops before it.
        let mut it = frames(&both[..both.len() - 1]);
        assert_eq!(it.by_ref().count(), 1);
        assert_eq!((it.consumed(), it.at_end()), (q.len(), false));
        let mut it = frames(b"Q\0\0\0\x03xyz");
        assert_eq!((it.next(), it.consumed()), (None, 0));
    }

    #[test]
    fn frames_split_only_when_complete_and_within_limit() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x09SELE"[..]);
        assert!(split_frame(&mut buf, 100).unwrap().is_none());
        buf.extend_from_slice(b"\0extra");
        let f = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&f[..], b"Q\0\0\0\x09SELE\0");
        assert_eq!(&buf[..], b"extra");
        let mut huge = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            split_frame(&mut huge, 1 << 20),
            Err(WireError::TooLarge { .. })
        ));
        let mut neg = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert!(matches!(
            split_frame(&mut neg, 1 << 20),
            Err(WireError::BadLength(-1))
        ));
    }

    #[test]
    fn bind_view_reads_what_pgwire_encodes() {
        use pgwire::messages::extendedquery::Bind;
        let params = vec![Some(bytes::Bytes::from_static(b"i1")), None];
        let bind = Bind::new(Some("p".into()), Some("s".into()), vec![0], params, vec![1]);
        let mut out = BytesMut::new();
        put(&mut out, &bind);
        let v = bind_view(&out).expect("view");
        assert_eq!((v.portal, v.statement), ("p", "s"));
        assert_eq!(v.params, vec![Some(&b"i1"[..]), None]);
        assert_eq!((v.param_formats, v.bad_length), (vec![0], false));
        assert_eq!(v.result_formats, vec![1]);
        assert!(bind_view(&out[..out.len() - 1]).is_none());
        out.extend_from_slice(b"x");
        assert!(bind_view(&out).is_none());
    }

    #[test]
    fn a_renamed_bind_is_the_same_bind_with_the_new_name() {
        use pgwire::messages::extendedquery::Bind;
        // The raw Bind pgwire encodes for these names, binary and null parameters.
        let encoded = |portal: &str, stmt: &str| {
            let params = vec![Some(bytes::Bytes::from_static(b"\x00\x01")), None];
            let bind = Bind::new(
                Some(portal.into()),
                Some(stmt.into()),
                vec![1, 0],
                params,
                vec![1],
            );
            let mut raw = BytesMut::new();
            put(&mut raw, &bind);
            raw
        };
        for (portal, stmt, renamed) in [("", "", ""), ("p1", "s", "orgwall_00ff"), ("", "x", "")] {
            let raw = encoded(portal, stmt);
            let v = bind_view(&raw).expect("view");
            let mut out = BytesMut::new();
            put_bind_renamed(&mut out, &raw, &v, renamed);
            let want_raw = encoded(portal, renamed);
            assert_eq!(out, want_raw, "{portal:?} {stmt:?} → {renamed:?}");
        }
    }

    #[test]
    fn error_fields_round_trip() {
        let out = ClientError::error("42501", "nope").to_frame();
        assert_eq!(out[0], b'E');
        assert_eq!(error_code(&out), Some("42501"));
        let f: ClientError = WireError::BadLength(-1).into();
        assert!(f.fatal);
        assert_eq!(f.code, "08P01");
        let renamed = with_error_code(&out, "23514");
        assert_eq!(error_code(&renamed), Some("23514"));
        assert_eq!(field(&renamed[5..], b'M'), Some("orgwall: nope"));
        assert_eq!(renamed.len(), out.len());
        let mut cc = frame(b'C', b"SELECT 1\0");
        assert_eq!(command_tag(&cc), "SELECT 1");
        cc.clear();
        put_ready(&mut cc, b'T');
        assert_eq!(ready_status(&cc), b'T');
    }
}
