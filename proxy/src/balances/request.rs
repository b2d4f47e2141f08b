//! One request for a recognised shape: its conditions resolved against the Bind's parameters
//! (text values, and `= ANY($n)` arrays in text or binary form), then the matching balances
//! selected from the store and put in order. Pure.
//!
//! Parameters are read only as PostgreSQL would read them the same way: an array whose form
//! is outside the strict subset read here (whitespace, dimensions, another element type, …)
//! makes the request `None`, and PostgreSQL answers it.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::shape::{Column, Cond, Order, Shape, Val};
use super::store::{Lookup, Lots, Row, Selection, Tables};

/// Element types of the arrays read here: `text` (the parameter is `text[]`).
const TEXT_ELEMENTS: [u32; 1] = [25];

/// The shape's conditions with their values. Lists hold distinct non-NULL values (a NULL
/// matches nothing); `None` = any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub orgs: Option<Vec<Cow<'a, str>>>,
    pub items: Option<Vec<Cow<'a, str>>>,
    pub locations: Option<Vec<Cow<'a, str>>>,
    /// `Some(None)` = `lot_id IS NULL`.
    pub lots: Option<Option<Vec<Cow<'a, str>>>>,
}

fn text(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    (!s.contains('\0')).then_some(s)
}

fn push<'a>(out: &mut Vec<Cow<'a, str>>, v: Cow<'a, str>) {
    if !out.contains(&v) {
        out.push(v);
    }
}

/// An `= ANY($n)` array parameter's elements (NULL elements as `None`).
pub fn array_elements(bytes: &[u8], format: i16) -> Option<Vec<Option<String>>> {
    match format {
        0 => text_array(text(bytes)?),
        1 => binary_array(bytes),
        _ => None,
    }
}

/// `{a,"b c",NULL}`: no whitespace, no dimensions, quoted elements with backslash escapes.
fn text_array(s: &str) -> Option<Vec<Option<String>>> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => v.push(chars.next()?),
                    c => v.push(c),
                }
            }
            out.push(Some(v));
        } else {
            let mut v = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c.is_whitespace() || "{}\"\\".contains(c) {
                    return None;
                }
                v.push(c);
                chars.next();
            }
            if v.is_empty() {
                return None;
            }
            out.push((!v.eq_ignore_ascii_case("null")).then_some(v));
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// `array_send`'s form: ndim (0 or 1), has-nulls flag, element type, dimension, elements.
fn binary_array(b: &[u8]) -> Option<Vec<Option<String>>> {
    let word = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let (ndim, flags, elem) = (word(0)?, word(4)?, word(8)?);
    if !(0..=1).contains(&ndim) || !(0..=1).contains(&flags) {
        return None;
    }
    if !TEXT_ELEMENTS.contains(&u32::try_from(elem).ok()?) {
        return None;
    }
    if ndim == 0 {
        return (b.len() == 12).then(Vec::new);
    }
    let n = usize::try_from(word(12)?).ok()?;
    word(16)?; // lower bound: any
    let mut at = 20;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = word(at)?;
        at += 4;
        if len == -1 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        out.push(Some(text(b.get(at..at + len)?)?.to_string()));
        at += len;
    }
    (at == b.len()).then_some(out)
}

/// Resolves the shape's conditions against Bind parameters (`formats`: the Bind's parameter
/// format codes). `None` when a value is not read here as PostgreSQL would read it.
pub fn resolve<'a>(
    shape: &'a Shape,
    params: &'a [Option<&'a [u8]>],
    formats: &[i16],
) -> Option<Resolved<'a>> {
    let format = |n: usize| match formats {
        [] => 0,
        [one] => *one,
        many => many.get(n - 1).copied().unwrap_or(0),
    };
    let values = |c: &'a Cond| -> Option<Vec<Cow<'a, str>>> {
        let mut out = Vec::new();
        match c {
            Cond::Values(vs) => {
                for v in vs {
                    match v {
                        Val::Literal(s) => push(&mut out, Cow::Borrowed(s.as_str())),
                        Val::Param(n) => match params.get(n - 1)? {
                            None => {}
                            Some(b) => push(&mut out, Cow::Borrowed(text(b)?)),
                        },
                    }
                }
            }
            Cond::Array(n) => {
                if let Some(b) = params.get(n - 1)? {
                    for e in array_elements(b, format(*n))?.into_iter().flatten() {
                        push(&mut out, Cow::Owned(e));
                    }
                }
            }
            Cond::Null => return None,
        }
        Some(out)
    };
    let f = shape.filter();
    let list = |c: &'a Option<Cond>| -> Option<Option<Vec<Cow<'a, str>>>> {
        match c {
            None => Some(None),
            Some(c) => Some(Some(values(c)?)),
        }
    };
    Some(Resolved {
        orgs: list(&f.org)?,
        items: list(&f.item)?,
        locations: list(&f.location)?,
        lots: match &f.lot {
            None => None,
            Some(Cond::Null) => Some(None),
            Some(c) => Some(Some(values(c)?)),
        },
    })
}

fn strs<'v>(v: &'v [Cow<'_, str>]) -> Vec<&'v str> {
    v.iter().map(|c| c.as_ref()).collect()
}

/// `text` order under the "C" collation, NULL last (ascending) as PostgreSQL sorts.
fn cmp_nullable(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.as_bytes().cmp(b.as_bytes()),
    }
}

fn cmp_by<'t>(org: &'t str, a: &Row<'t>, b: &Row<'t>, o: Order) -> Ordering {
    let key = |r: &Row<'t>| -> Option<&'t str> {
        match o.column {
            Column::OrgId => Some(org),
            Column::ItemId => Some(r.item),
            Column::LocationId => Some(r.location),
            Column::LotId => r.lot,
            // Not an ORDER BY key (`shape.rs` takes key columns only).
            Column::Quantity | Column::UpdatedAt => None,
        }
    };
    // NULL sorts last ascending, first descending.
    let ord = cmp_nullable(key(a), key(b));
    if o.desc {
        ord.reverse()
    } else {
        ord
    }
}

/// The rows of a `Rows` request for `org`, in order: by the ORDER BY keys (`None` when there
/// are several rows and the key columns do not sort bytewise), then by key.
pub fn select<'t>(
    t: &'t Tables,
    org: &str,
    r: &Resolved<'_>,
    order: &[Order],
    bytewise: bool,
) -> Option<Vec<Row<'t>>> {
    if r.orgs.as_ref().is_some_and(|o| !o.iter().any(|v| v == org)) {
        return Some(vec![]);
    }
    let items = strs(r.items.as_deref()?);
    let mut rows = with_selection(r, org, &items, |q| t.select(q))?;
    if rows.len() > 1 {
        if !order.is_empty() && !bytewise {
            return None;
        }
        rows.sort_by(|a, b| {
            a.item
                .as_bytes()
                .cmp(b.item.as_bytes())
                .then_with(|| a.location.as_bytes().cmp(b.location.as_bytes()))
                .then_with(|| cmp_nullable(a.lot, b.lot))
        });
        rows.sort_by(|a, b| {
            order.iter().fold(Ordering::Equal, |acc, &o| {
                acc.then_with(|| cmp_by(org, a, b, o))
            })
        });
    }
    Some(rows)
}

/// `sum(quantity)` of a `Total` request for `org`.
pub fn total(t: &Tables, org: &str, r: &Resolved<'_>) -> Lookup {
    if r.orgs.as_ref().is_some_and(|o| !o.iter().any(|v| v == org)) {
        return Lookup::Missing;
    }
    let Some(items) = r.items.as_deref().map(strs) else {
        // Per location (recognised only without item and lot).
        let locations = r.locations.as_deref().map(strs).unwrap_or_default();
        return t.location_sum(org, &locations);
    };
    with_selection(r, org, &items, |q| t.sum(q))
}

/// Runs `f` on the store's selection for `r`'s items, locations and lots.
fn with_selection<T>(
    r: &Resolved<'_>,
    org: &str,
    items: &[&str],
    f: impl FnOnce(&Selection<'_>) -> T,
) -> T {
    let locations = r.locations.as_deref().map(strs);
    let lot_list = match &r.lots {
        Some(Some(l)) => strs(l),
        _ => vec![],
    };
    let lots = match &r.lots {
        None => Lots::Any,
        Some(None) => Lots::Null,
        Some(Some(_)) => Lots::In(&lot_list),
    };
    f(&Selection {
        org,
        items,
        locations: locations.as_deref(),
        lots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_in_the_strict_subset() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(text_array("{}"), Some(vec![]));
        assert_eq!(text_array("{a,b}"), Some(vec![s("a"), s("b")]));
        assert_eq!(
            text_array(r#"{"a b","c\"d",NULL,"NULL"}"#),
            Some(vec![s("a b"), s("c\"d"), None, s("NULL")])
        );
        for bad in [
            "",
            "{",
            "{a, b}",
            "{a,}",
            "{,a}",
            "[1:1]={a}",
            "{{a}}",
            "{a\"b}",
            "{\"a\"b}",
        ] {
            assert_eq!(text_array(bad), None, "{bad}");
        }
    }

    #[test]
    fn binary_arrays_of_text_only() {
        let mut b = vec![];
        for w in [1i32, 1, 25, 2, 1, 1] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.push(b'x');
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(binary_array(&b), Some(vec![Some("x".to_string()), None]));
        let mut int_elems = b.clone();
        int_elems[8..12].copy_from_slice(&23i32.to_be_bytes());
        assert_eq!(binary_array(&int_elems), None);
        assert_eq!(binary_array(&b[..b.len() - 1]), None);
        let mut empty = vec![];
        for w in [0i32, 0, 25] {
            empty.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(binary_array(&empty), Some(vec![]));
    }
}
