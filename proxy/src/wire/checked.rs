//! Whether a frontend message's body has exactly the layout its type requires, checked with
//! bounds on every read before pgwire decodes it (pgwire's decoders assume well-formed input
//! and panic on a truncated Bind or Parse). Anything else is a protocol violation (`08P01`).

/// A cursor over a message body that never reads past its end.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cstr(&mut self) -> Option<()> {
        let end = self.0.iter().position(|&c| c == 0)?;
        self.take(end + 1).map(|_| ())
    }
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i16()?).ok()
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// Whether `body` (after the tag and length) is a well-formed message of type `tag`. Types
/// this module does not know are left to their decoders.
pub fn well_formed(tag: u8, body: &[u8]) -> bool {
    let mut b = Body(body);
    let ok = match tag {
        b'Q' => b.cstr().and_then(|()| b.end()),
        b'P' => (|| {
            b.cstr()?;
            b.cstr()?;
            let n = b.count()?;
            for _ in 0..n {
                b.i32()?;
            }
            b.end()
        })(),
        b'B' => (|| {
            b.cstr()?;
            b.cstr()?;
            for _ in 0..b.count()? {
                b.i16()?;
            }
            for _ in 0..b.count()? {
                let len = b.i32()?;
                if len < -1 {
                    return None;
                }
                if len > 0 {
                    b.take(len as usize)?;
                }
            }
            for _ in 0..b.count()? {
                b.i16()?;
            }
            b.end()
        })(),
        b'D' | b'C' => (|| {
            b.take(1)?;
            b.cstr()?;
            b.end()
        })(),
        b'E' => b.cstr().and_then(|()| b.i32()).and_then(|_| b.end()),
        b'S' | b'H' | b'X' | b'c' => b.end(),
        _ => Some(()),
    };
    ok.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_overlong_bodies_are_caught() {
        let bind = b"\0s\0\0\x01\0\0\0\x01\0\0\0\x01x\0\0";
        assert!(well_formed(b'B', bind));
        for cut in 0..bind.len() {
            assert!(!well_formed(b'B', &bind[..cut]), "Bind cut at {cut}");
        }
        assert!(!well_formed(b'B', b"\0s\0\0\0\0\x01\xff\xff\xff\xfe\0\0"));
        assert!(!well_formed(b'B', b"\0s\0\xff\xff"));
        assert!(well_formed(b'P', b"s\0SELECT 1\0\0\x01\0\0\0\x17"));
        assert!(!well_formed(b'P', b"s\0SELECT 1\0\0\x02\0\0\0\x17"));
        assert!(well_formed(b'E', b"\0\0\0\0\0"));
        assert!(!well_formed(b'E', b"\0\0\0"));
        assert!(!well_formed(b'S', b"x"));
        assert!(well_formed(b'D', b"Ss1\0"));
        assert!(!well_formed(b'Q', b"SELECT 1"));
    }
}
