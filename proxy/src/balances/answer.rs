//! Builds the responses PostgreSQL would send for a recognised shape: RowDescription (with the
//! column's real table OID, attnum, type OID, typlen and typmod), DataRow in text or binary, and
//! the CommandComplete tag. Pure: the caller supplies the looked-up value.

use bytes::{BufMut, BytesMut};

use super::decimal::Decimal;
use super::shape::{Column, Out, Shape};
use super::store::Row;
use super::timestamp;

/// Catalog facts about one column of `inventory_balances`, as `pg_attribute` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnMeta {
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub typlen: i16,
    pub typmod: i32,
}

/// Metadata of the columns the cache serves, in [`Column`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub org_id: ColumnMeta,
    pub item_id: ColumnMeta,
    pub location_id: ColumnMeta,
    pub lot_id: ColumnMeta,
    pub quantity: ColumnMeta,
    /// `None` when the table has no `updated_at timestamptz` (then it is not served).
    pub updated_at: Option<ColumnMeta>,
    /// The key columns sort bytewise (the "C" collation): ORDER BY answers are PostgreSQL's.
    pub bytewise: bool,
    /// The table's columns are exactly [`STAR`](super::shape::STAR), in that order: `*` is
    /// answered.
    pub star: bool,
    /// The table's column names in attnum order, as the round started (the stream resyncs
    /// when its Relation message says otherwise: a column added or dropped meanwhile).
    pub names: Vec<String>,
}

impl Columns {
    fn get(&self, c: Column) -> ColumnMeta {
        match c {
            Column::OrgId => self.org_id,
            Column::ItemId => self.item_id,
            Column::LocationId => self.location_id,
            Column::LotId => self.lot_id,
            Column::Quantity => self.quantity,
            Column::UpdatedAt => self.updated_at.unwrap_or(self.quantity),
        }
    }

    /// Whether answers to `shape` can be built from these columns: `*` only for the table
    /// as migration 0003 creates it, `updated_at` only when it is a `timestamptz`.
    pub fn serve(&self, shape: &Shape) -> bool {
        match shape {
            Shape::Total { .. } => true,
            Shape::Rows { cols, star, .. } => {
                (!star || self.star)
                    && (self.updated_at.is_some()
                        || cols.iter().all(|o| o.column != Column::UpdatedAt))
            }
        }
    }
}

const NUMERIC: u32 = 1700;
pub const TIMESTAMPTZ: u32 = 1184;
const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const TEXT_ARRAY: u32 = 1009;

/// The format code of each output column, from Bind's result format codes.
pub fn formats(shape: &Shape, codes: &[i16]) -> Option<Vec<i16>> {
    let n = match shape {
        Shape::Rows { cols, .. } => cols.len(),
        Shape::Total { .. } => 1,
    };
    let all = |c: i16| (c == 0 || c == 1).then(|| vec![c; n]);
    match codes.len() {
        0 => all(0),
        1 => all(codes[0]),
        len if len == n => codes
            .iter()
            .all(|&c| c == 0 || c == 1)
            .then(|| codes.to_vec()),
        _ => None,
    }
}

fn frame(tag: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u8(tag);
    b.put_i32(body.len() as i32 + 4);
    b.put_slice(body);
    b
}

/// RowDescription for the shape.
pub fn row_description(shape: &Shape, cols: &Columns, formats: &[i16]) -> BytesMut {
    let mut body = BytesMut::new();
    let mut field = |name: &str, m: ColumnMeta, format: i16| {
        body.put_slice(name.as_bytes());
        body.put_u8(0);
        body.put_u32(m.table_oid);
        body.put_i16(m.attnum);
        body.put_u32(m.type_oid);
        body.put_i16(m.typlen);
        body.put_i32(m.typmod);
        body.put_i16(format);
    };
    match shape {
        Shape::Rows { cols: outs, .. } => {
            let mut head = BytesMut::new();
            head.put_i16(outs.len() as i16);
            for (o, &f) in outs.iter().zip(formats) {
                field(&o.name, cols.get(o.column), f);
            }
            head.put_slice(&body);
            return frame(b'T', &head);
        }
        Shape::Total { name, .. } => {
            let sum = ColumnMeta {
                table_oid: 0,
                attnum: 0,
                type_oid: NUMERIC,
                typlen: -1,
                typmod: -1,
            };
            field(name, sum, formats.first().copied().unwrap_or(0));
        }
    }
    let mut head = BytesMut::new();
    head.put_i16(1);
    head.put_slice(&body);
    frame(b'T', &head)
}

/// ParameterDescription for a recognised statement: each `$n` has the type the client declared
/// in Parse or, undeclared, the type of the key column it is compared with (`text[]` for
/// `= ANY($n)`) — which PostgreSQL infers unambiguously only for `text` columns, so anything
/// else is `None` (ask PostgreSQL).
pub fn parameter_description(shape: &Shape, cols: &Columns, declared: &[u32]) -> Option<BytesMut> {
    if !cols.serve(shape) {
        return None;
    }
    let uses = shape.params();
    let n = shape.param_count().max(declared.len());
    let mut body = BytesMut::new();
    body.put_i16(i16::try_from(n).ok()?);
    for i in 1..=n {
        let oid = match declared.get(i - 1).copied().filter(|&t| t != 0) {
            Some(t) => t,
            None => {
                let &(_, c, array) = uses.iter().find(|u| u.0 == i)?;
                let t = cols.get(c).type_oid;
                (t == TEXT).then_some(if array { TEXT_ARRAY } else { t })?
            }
        };
        body.put_u32(oid);
    }
    Some(frame(b't', &body))
}

/// The parameter types a recognised statement's Bind is checked with: declared ones, else
/// `text` (or `text[]` for `= ANY($n)`), as PostgreSQL infers them.
pub fn effective_types(shape: &Shape, declared: &[u32]) -> Vec<u32> {
    let n = shape.param_count().max(declared.len());
    (1..=n)
        .map(|i| match declared.get(i - 1).copied().filter(|&t| t != 0) {
            Some(t) => t,
            None if shape.is_array_param(i) => TEXT_ARRAY,
            None => TEXT,
        })
        .collect()
}

/// Whether the declared parameter types fit the statement: text-like for values, `text[]` for
/// `= ANY($n)` (anything else PostgreSQL casts or refuses: it answers those).
pub fn declared_types_fit(shape: &Shape, declared: &[u32]) -> bool {
    declared.iter().enumerate().all(|(i, &t)| {
        if shape.is_array_param(i + 1) {
            t == 0 || t == TEXT_ARRAY
        } else {
            [0, TEXT, VARCHAR].contains(&t)
        }
    })
}

fn put_value(body: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => body.put_i32(-1),
        Some(b) => {
            body.put_i32(b.len() as i32);
            body.put_slice(b);
        }
    }
}

fn numeric(d: Decimal, format: i16) -> Vec<u8> {
    if format == 1 {
        d.to_binary()
    } else {
        d.to_text().into_bytes()
    }
}

/// Starts a message in `out`; [`end_frame`] fills in its length.
fn start_frame(out: &mut BytesMut, tag: u8) -> usize {
    let at = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    at
}

fn end_frame(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at - 1) as i32;
    out[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
}

/// The DataRow of one balance row for the shape's columns; `None` when a value cannot be
/// written as PostgreSQL would (`updated_at` as text for a session not in UTC and ISO
/// style — `utc_text` false — or a timestamp this module does not reproduce).
pub fn data_row(
    outs: &[Out],
    org: &str,
    row: &Row<'_>,
    formats: &[i16],
    utc_text: bool,
) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(64);
    let at = start_frame(&mut out, b'D');
    out.put_i16(outs.len() as i16);
    for (o, &f) in outs.iter().zip(formats) {
        match o.column {
            Column::OrgId => put_value(&mut out, Some(org.as_bytes())),
            Column::ItemId => put_value(&mut out, Some(row.item.as_bytes())),
            Column::LocationId => put_value(&mut out, Some(row.location.as_bytes())),
            Column::LotId => put_value(&mut out, row.lot.map(str::as_bytes)),
            Column::Quantity => put_value(&mut out, Some(&numeric(row.quantity, f))),
            Column::UpdatedAt => match row.updated_at {
                timestamp::NULL => put_value(&mut out, None),
                timestamp::UNSERVABLE => return None,
                at if f == 1 => put_value(&mut out, Some(&timestamp::to_binary(at))),
                at if utc_text => {
                    let mut text = [0u8; 32];
                    let n = timestamp::write_text_utc(at, &mut text)?;
                    put_value(&mut out, Some(&text[..n]));
                }
                _ => return None,
            },
        }
    }
    end_frame(&mut out, at);
    Some(out)
}

/// The DataRow of a total (`None` = no balance rows: SQL NULL).
pub fn total_row(total: Option<Decimal>, formats: &[i16]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(1);
    let v = total.map(|d| numeric(d, formats.first().copied().unwrap_or(0)));
    put_value(&mut body, v.as_deref());
    frame(b'D', &body)
}

/// CommandComplete `SELECT n`.
pub fn command_complete(rows: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(16);
    put_command_complete(&mut out, rows);
    out
}

/// Appends CommandComplete `SELECT n` to `out`.
pub fn put_command_complete(out: &mut BytesMut, rows: usize) {
    let at = start_frame(out, b'C');
    out.put_slice(b"SELECT ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = rows;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
    out.put_u8(0);
    end_frame(out, at);
}

/// Whether PostgreSQL's column types are the ones this module knows how to encode.
pub fn supported(cols: &Columns) -> bool {
    const TEXT: u32 = 25;
    [cols.org_id, cols.item_id, cols.location_id, cols.lot_id]
        .iter()
        .all(|c| c.type_oid == TEXT)
        && cols.quantity.type_oid == NUMERIC
        && cols.updated_at.is_none_or(|c| c.type_oid == TIMESTAMPTZ)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balances::shape::recognise;

    #[test]
    fn resolves_params_and_formats() {
        use crate::balances::request::resolve;
        let shape = recognise(
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id = $3",
            "public",
        )
        .expect("shape");
        let params: Vec<Option<&[u8]>> = vec![Some(b"i"), Some(b"l"), None];
        let r = resolve(&shape, &params, &[]).expect("resolved");
        assert_eq!(r.lots, Some(Some(vec![])), "lot_id = NULL matches nothing");
        assert!(resolve(&shape, &params[..2], &[]).is_none());
        let bad: Vec<Option<&[u8]>> = vec![Some(b"\xff"), Some(b"l"), None];
        assert!(resolve(&shape, &bad, &[]).is_none());
        assert_eq!(formats(&shape, &[]), Some(vec![0]));
        assert_eq!(formats(&shape, &[1]), Some(vec![1]));
        assert_eq!(formats(&shape, &[0, 1]), None);
        assert_eq!(formats(&shape, &[2]), None);
    }

    #[test]
    fn parameter_types() {
        let shape = recognise(
            "SELECT quantity FROM inventory_balances WHERE item_id = ANY($1) AND location_id = $2",
            "public",
        )
        .expect("shape");
        assert_eq!(effective_types(&shape, &[]), vec![TEXT_ARRAY, TEXT]);
        assert_eq!(
            effective_types(&shape, &[0, VARCHAR]),
            vec![TEXT_ARRAY, VARCHAR]
        );
        assert!(declared_types_fit(&shape, &[TEXT_ARRAY, VARCHAR]));
        assert!(
            !declared_types_fit(&shape, &[TEXT, TEXT]),
            "ANY needs an array"
        );
        assert!(!declared_types_fit(&shape, &[0, TEXT_ARRAY]));
        assert!(
            !declared_types_fit(&shape, &[1015, 0]),
            "varchar[] elements: PostgreSQL's"
        );
    }

    #[test]
    fn encodes_rows() {
        let shape = recognise(
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'x'",
            "public",
        )
        .expect("shape");
        assert_eq!(
            &total_row(None, &[0])[..],
            b"D\0\0\0\x0a\0\x01\xff\xff\xff\xff"
        );
        let d = Decimal::parse("1.50").expect("decimal");
        assert_eq!(
            &total_row(Some(d), &[0])[..],
            b"D\0\0\0\x0e\0\x01\0\0\0\x041.50"
        );
        assert_eq!(&command_complete(1)[..], b"C\0\0\0\x0dSELECT 1\0");
        assert_eq!(&command_complete(0)[..], b"C\0\0\0\x0dSELECT 0\0");
        assert_eq!(&command_complete(1234)[..], b"C\0\0\0\x10SELECT 1234\0");
        let _ = shape;
    }
}
