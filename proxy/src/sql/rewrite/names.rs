//! Identifier resolution exactly as PostgreSQL does it: unquoted names fold to lower case
//! (ASCII only, as with a UTF-8 server encoding), double-quoted names are taken verbatim.
//! Also builds identifiers for the output, quoting them whenever PostgreSQL would need it.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::Refusal;

/// The name PostgreSQL would look up for `ident`.
pub(crate) fn norm(ident: &Ident) -> Result<String, Refusal> {
    use crate::sql::lex::truncate_identifier;
    match ident.quote_style {
        None => Ok(truncate_identifier(ident.value.to_ascii_lowercase())),
        Some('"') => Ok(truncate_identifier(ident.value.clone())),
        Some(q) => Err(Refusal::syntax(format!(
            "identifier quoted with {q} is not PostgreSQL syntax"
        ))),
    }
}

/// The parts of a dotted name, each resolved with [`norm`].
pub(crate) fn parts(name: &ObjectName) -> Result<Vec<String>, Refusal> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => norm(i),
            ObjectNamePart::Function(_) => Err(Refusal::unsupported(format!(
                "computed name {name} is not supported"
            ))),
        })
        .collect()
}

/// The last identifier of a dotted name as written (quoting kept), used as a default alias.
pub(crate) fn last_ident(name: &ObjectName) -> Result<Ident, Refusal> {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Ok(i.clone()),
        _ => Err(Refusal::unsupported(format!("unsupported name {name}"))),
    }
}

/// PostgreSQL's reserved key words (plus a few sqlparser treats specially): an identifier
/// spelled like one of these must be quoted in the output. A `match` (compiled to a length
/// dispatch, then a few comparisons): this runs for every identifier the rewriter prints.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "all"
            | "analyse"
            | "analyze"
            | "and"
            | "any"
            | "array"
            | "as"
            | "asc"
            | "asymmetric"
            | "both"
            | "case"
            | "cast"
            | "check"
            | "collate"
            | "column"
            | "constraint"
            | "create"
            | "cross"
            | "current_catalog"
            | "current_date"
            | "current_role"
            | "current_time"
            | "current_timestamp"
            | "current_user"
            | "default"
            | "deferrable"
            | "desc"
            | "distinct"
            | "do"
            | "else"
            | "end"
            | "except"
            | "false"
            | "fetch"
            | "for"
            | "foreign"
            | "from"
            | "full"
            | "grant"
            | "group"
            | "having"
            | "in"
            | "initially"
            | "inner"
            | "intersect"
            | "into"
            | "join"
            | "key"
            | "lateral"
            | "leading"
            | "left"
            | "limit"
            | "localtime"
            | "localtimestamp"
            | "natural"
            | "not"
            | "null"
            | "offset"
            | "on"
            | "only"
            | "or"
            | "order"
            | "outer"
            | "placing"
            | "primary"
            | "references"
            | "returning"
            | "right"
            | "select"
            | "session_user"
            | "some"
            | "symmetric"
            | "system_user"
            | "table"
            | "then"
            | "to"
            | "trailing"
            | "true"
            | "union"
            | "unique"
            | "user"
            | "using"
            | "variadic"
            | "when"
            | "where"
            | "window"
            | "with"
    )
}

/// An output identifier naming exactly `name`: bare when PostgreSQL would read it back
/// unchanged, double-quoted otherwise.
pub(crate) fn ident(name: &str) -> Ident {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if simple {
        Ident::new(name)
    } else {
        Ident::with_quote('"', name)
    }
}

/// `schema.name` as output identifiers.
pub(crate) fn qualified(schema: &str, name: &str) -> ObjectName {
    ObjectName::from(vec![ident(schema), ident(name)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_quoting() {
        assert_eq!(norm(&Ident::new("Users")).ok(), Some("users".into()));
        assert_eq!(
            norm(&Ident::with_quote('"', "Users")).ok(),
            Some("Users".into())
        );
        assert!(norm(&Ident::with_quote('`', "x")).is_err());
        assert_eq!(ident("items").to_string(), "items");
        assert_eq!(ident("User").to_string(), "\"User\"");
        assert_eq!(ident("key").to_string(), "\"key\"");
        assert_eq!(ident("a\"b").to_string(), "\"a\"\"b\"");
        assert_eq!(ident("").to_string(), "\"\"");
        assert_eq!(ident("9x").to_string(), "\"9x\"");
    }
}
