//! Full-duplex polling of one stream: a single poll tries the pending write and the read, so
//! one `select!` branch per side needs just one `&mut` borrow of the stream (plain or TLS alike).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// What happened on a stream.
pub enum Io {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
}

/// Polls a write of `out` (if non-empty) and a read into `inbuf` (if given).
pub fn poll_duplex<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    stream: &mut S,
    inbuf: Option<&mut BytesMut>,
    out: &[u8],
) -> Poll<Io> {
    if !out.is_empty() {
        if let Poll::Ready(r) = Pin::new(&mut *stream).poll_write(cx, out) {
            return Poll::Ready(Io::Wrote(r));
        }
    } else if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
        // TLS keeps records buffered until flushed; plain TCP flushes instantly.
        return Poll::Ready(Io::Wrote(Err(e)));
    }
    if let Some(buf) = inbuf {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if let Poll::Ready(r) = tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf) {
            return Poll::Ready(Io::Read(r));
        }
    }
    Poll::Pending
}

/// Writes as much of `out` as the stream takes without waiting. Errors are left for the next
/// awaited poll to report, so they surface in one place.
pub fn write_now<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) {
    let mut cx = Context::from_waker(Waker::noop());
    while !out.is_empty() {
        match Pin::new(&mut *stream).poll_write(&mut cx, out) {
            Poll::Ready(Ok(n)) if n > 0 => out.advance(n),
            _ => return,
        }
    }
    let _ = Pin::new(&mut *stream).poll_flush(&mut cx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_and_writes_progress_on_one_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut out = BytesMut::from(&b"hello"[..]);
        write_now(&mut a, &mut out);
        assert!(out.is_empty());
        b.write_all(b"back").await.unwrap();
        let mut inbuf = BytesMut::new();
        let got = std::future::poll_fn(|cx| poll_duplex(cx, &mut a, Some(&mut inbuf), &[])).await;
        assert!(matches!(got, Io::Read(Ok(4))));
        assert_eq!(&inbuf[..], b"back");
    }
}
