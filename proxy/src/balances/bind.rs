//! Whether a Bind of a statement the cache answers is one PostgreSQL would accept as it is,
//! checked the way `exec_bind_message` checks it. Pure.
//!
//! The cache answers only Binds that pass every check; anything unusual goes to PostgreSQL,
//! which reports it with its own SQLSTATE and message and leaves the connection in its own
//! state. The one check the session makes itself is a named portal that already exists
//! locally (42P03, `session/local/portals.rs`): PostgreSQL never saw that portal.

use crate::wire::BindView;

/// Parameter types whose binary form is their text (`textrecv`, `varcharrecv`, and an
/// unspecified type, which PostgreSQL infers as the key columns' `text`).
const TEXT_LIKE: [u32; 3] = [0, 25, 1043];

/// `text[]`, the type of an `= ANY($n)` parameter.
const TEXT_ARRAY: u32 = 1009;

/// Fixed-size binary input of the types a parameter of a recognised statement could have,
/// with the byte count their receive function consumes (bool, int2, int4, int8, oid,
/// float4, float8).
const FIXED: [(u32, usize); 7] = [
    (16, 1),
    (21, 2),
    (23, 4),
    (20, 8),
    (26, 4),
    (700, 4),
    (701, 8),
];

/// Why a Bind is left to PostgreSQL (with the SQLSTATE PostgreSQL then reports).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusual {
    /// 08P01.
    #[error("bind message has {formats} parameter formats but {params} parameters")]
    FormatCount { formats: usize, params: usize },
    /// 08P01.
    #[error("bind message supplies {given} parameters, but the statement requires {wanted}")]
    ParamCount { given: usize, wanted: usize },
    /// 08P01 ("insufficient data left in message").
    #[error("a parameter length below -1")]
    BadLength,
    /// 22023.
    #[error("unsupported format code: {0}")]
    FormatCode(i16),
    /// 22021.
    #[error("parameter {0} is not valid UTF-8 without NUL bytes")]
    Encoding(usize),
    /// 22P03.
    #[error("binary parameter {param} has {len} bytes, its type takes {want}")]
    BinaryLength {
        param: usize,
        len: usize,
        want: usize,
    },
    /// Whatever the type's receive function makes of it.
    #[error("binary parameter {param} of type {oid} is not checked here")]
    BinaryType { param: usize, oid: u32 },
    /// 08P01 (count) or 22023 (code), at Execute.
    #[error("result format codes {0:?} do not fit the statement")]
    ResultFormats(Vec<i16>),
}

/// The checks PostgreSQL makes before it creates the portal: how many parameter format codes
/// (0, 1 or one per parameter) and parameters (`wanted`, the statement's) there are.
pub fn counts(view: &BindView<'_>, wanted: usize) -> Result<(), Unusual> {
    let (formats, params) = (view.param_formats.len(), view.params.len());
    if formats > 1 && formats != params {
        return Err(Unusual::FormatCount { formats, params });
    }
    if params != wanted {
        return Err(Unusual::ParamCount {
            given: params,
            wanted,
        });
    }
    Ok(())
}

/// The checks PostgreSQL makes on each parameter once the portal exists: lengths of at least
/// −1, format codes 0 or 1 (NULLs included), text valid UTF-8 without NUL (`text` and
/// `varchar` receive their binary form as text, so the same holds there), binary values of
/// fixed-size types exactly as long as the type. `types` are the statement's parameter types
/// (`answer::effective_types`); the result formats must fit (`result_formats_fit`).
pub fn values(view: &BindView<'_>, types: &[u32], result_formats_fit: bool) -> Result<(), Unusual> {
    if view.bad_length {
        return Err(Unusual::BadLength);
    }
    for (i, value) in view.params.iter().enumerate() {
        let format = match view.param_formats.as_slice() {
            [] => 0,
            [one] => *one,
            many => many[i],
        };
        let oid = types.get(i).copied().unwrap_or(0);
        let Some(value) = value else {
            if format != 0 && format != 1 {
                return Err(Unusual::FormatCode(format));
            }
            continue;
        };
        match format {
            0 => text(i + 1, value)?,
            1 if TEXT_LIKE.contains(&oid) => text(i + 1, value)?,
            // `= ANY($n)`: read (strictly) when the request is resolved, else PostgreSQL's.
            1 if oid == TEXT_ARRAY => {}
            1 => binary(i + 1, oid, value)?,
            other => return Err(Unusual::FormatCode(other)),
        }
    }
    if !result_formats_fit {
        return Err(Unusual::ResultFormats(view.result_formats.clone()));
    }
    Ok(())
}

fn text(param: usize, value: &[u8]) -> Result<(), Unusual> {
    match std::str::from_utf8(value) {
        Ok(_) if !value.contains(&0) => Ok(()),
        _ => Err(Unusual::Encoding(param)),
    }
}

fn binary(param: usize, oid: u32, value: &[u8]) -> Result<(), Unusual> {
    match FIXED.iter().find(|(t, _)| *t == oid) {
        Some(&(_, want)) if value.len() == want => Ok(()),
        Some(&(_, want)) => Err(Unusual::BinaryLength {
            param,
            len: value.len(),
            want,
        }),
        None => Err(Unusual::BinaryType { param, oid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(formats: &[i16], params: &[Option<&'a [u8]>], results: &[i16]) -> BindView<'a> {
        BindView {
            portal: "",
            statement: "s",
            param_formats: formats.to_vec(),
            params: params.to_vec(),
            bad_length: false,
            result_formats: results.to_vec(),
        }
    }

    #[test]
    fn format_and_parameter_counts_as_postgres_checks_them() {
        let two = [Some(&b"i1"[..]), Some(&b"l1"[..])];
        for formats in [&[][..], &[0], &[1], &[0, 1]] {
            assert_eq!(counts(&view(formats, &two, &[]), 2), Ok(()), "{formats:?}");
        }
        assert_eq!(
            counts(&view(&[0, 0, 0], &two, &[]), 2),
            Err(Unusual::FormatCount {
                formats: 3,
                params: 2
            })
        );
        assert_eq!(
            counts(&view(&[], &two[..1], &[]), 2),
            Err(Unusual::ParamCount {
                given: 1,
                wanted: 2
            })
        );
        // One format code for no parameters is fine for PostgreSQL too.
        assert_eq!(counts(&view(&[7], &[], &[]), 0), Ok(()));
    }

    #[test]
    fn every_parameter_value_is_checked_as_postgres_would() {
        let ok = |formats: &[i16], params: &[Option<&[u8]>], types: &[u32]| {
            values(&view(formats, params, &[]), types, true)
        };
        assert_eq!(ok(&[], &[Some(b"i_a1"), None], &[]), Ok(()));
        assert_eq!(ok(&[1], &[Some("ä".as_bytes())], &[25]), Ok(()));
        assert_eq!(ok(&[7], &[Some(b"x")], &[]), Err(Unusual::FormatCode(7)));
        assert_eq!(
            ok(&[0, -1], &[Some(b"x"), None], &[]),
            Err(Unusual::FormatCode(-1))
        );
        assert_eq!(ok(&[], &[Some(b"a\xff")], &[]), Err(Unusual::Encoding(1)));
        assert_eq!(
            ok(&[], &[Some(b"x"), Some(b"a\0b")], &[]),
            Err(Unusual::Encoding(2))
        );
        assert_eq!(
            ok(&[1], &[Some(b"\xc3")], &[1043]),
            Err(Unusual::Encoding(1))
        );
        assert_eq!(ok(&[1], &[Some(&7i64.to_be_bytes())], &[20]), Ok(()));
        assert_eq!(
            ok(&[1], &[Some(&7i32.to_be_bytes())], &[20]),
            Err(Unusual::BinaryLength {
                param: 1,
                len: 4,
                want: 8
            })
        );
        assert_eq!(
            ok(&[1], &[Some(b"12")], &[1700]),
            Err(Unusual::BinaryType {
                param: 1,
                oid: 1700
            })
        );
        let mut bad = view(&[], &[None], &[]);
        bad.bad_length = true;
        assert_eq!(values(&bad, &[], true), Err(Unusual::BadLength));
        assert_eq!(
            values(&view(&[], &[], &[7]), &[], false),
            Err(Unusual::ResultFormats(vec![7]))
        );
    }

    #[test]
    fn a_length_below_minus_one_is_seen_by_the_reader() {
        // Bind "" "s": no format codes, one parameter of length -2, no result formats.
        let mut body = b"\0s\0\0\0\0\x01".to_vec();
        body.extend_from_slice(&(-2i32).to_be_bytes());
        body.extend_from_slice(b"\0\0");
        let frame = crate::wire::frame(b'B', &body);
        let v = crate::wire::bind_view(&frame).expect("view");
        assert!(v.bad_length);
        assert_eq!(values(&v, &[], true), Err(Unusual::BadLength));
    }
}
