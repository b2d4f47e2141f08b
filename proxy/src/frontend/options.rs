//! Run-time settings from the startup packet: its `options` string split as PostgreSQL splits
//! it, and the allow-list that holds tenant and switcher logins to settings that change
//! nothing but their own session's formatting and limits (each under the rules `SET` follows
//! for them). Admin logins may send any setting, as to PostgreSQL itself.

use crate::config::Role;
use crate::sql::rewrite::{BACKSLASH_QUOTE, STANDARD_CONFORMING_STRINGS};

/// Settings a tenant or switcher may send at startup, lower case, with the values allowed
/// (`None`: any value; it is sent to PostgreSQL as a quoted literal through `set_config`).
const TENANT_SETTINGS: &[(&str, Option<&[&str]>)] = &[
    ("application_name", None),
    ("backslash_quote", Some(BACKSLASH_QUOTE)),
    ("bytea_output", None),
    (
        "client_encoding",
        Some(&["utf8", "utf-8", "unicode", "'utf8'", "'utf-8'", "'unicode'"]),
    ),
    ("client_min_messages", None),
    ("datestyle", None),
    ("default_transaction_deferrable", None),
    ("default_transaction_isolation", None),
    ("default_transaction_read_only", None),
    ("extra_float_digits", None),
    ("idle_in_transaction_session_timeout", None),
    ("intervalstyle", None),
    ("lock_timeout", None),
    (
        "standard_conforming_strings",
        Some(STANDARD_CONFORMING_STRINGS),
    ),
    ("statement_timeout", None),
    ("timezone", None),
];

/// Parses the startup `options` value: `-c name=value` / `--name=value` items separated by
/// whitespace, a backslash taking the next character literally (libpq's escaping of spaces).
pub(super) fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut words = split_words(options).into_iter();
    while let Some(w) = words.next() {
        let kv = if w == "-c" {
            words.next().unwrap_or_default()
        } else if let Some(rest) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
            rest.to_string()
        } else {
            return Err(format!(
                "startup option `{w}` is not supported (only -c name=value)"
            ));
        };
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("startup option `{kv}` has no value"))?;
        out.push((k.replace('-', "_"), v.to_string()));
    }
    Ok(out)
}

/// PostgreSQL's `pg_split_opts`: whitespace separates, `\x` is `x`.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if c == '\\' {
            cur.extend(chars.next());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Refuses a startup setting a `role` login may not send (the message names it).
pub(super) fn check(role: Role, settings: &[(String, String)]) -> Result<(), String> {
    if role == Role::Admin {
        return Ok(());
    }
    for (name, value) in settings {
        let lower = name.to_ascii_lowercase();
        let Some((_, values)) = TENANT_SETTINGS.iter().find(|(n, _)| *n == lower) else {
            return Err(format!(
                "startup setting \"{name}\" is not allowed for {} logins",
                role.as_str()
            ));
        };
        if let Some(values) = values {
            if !values.contains(&value.trim().to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "startup setting \"{name}\" may only be {} for {} logins",
                    values[0],
                    role.as_str()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_parse_into_settings() {
        assert_eq!(
            parse_options("-c search_path=app -c statement-timeout=5s --work_mem=4MB").unwrap(),
            vec![
                ("search_path".into(), "app".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "4MB".into())
            ]
        );
        assert_eq!(
            parse_options("-c application_name=a\\ b\\\\c").unwrap(),
            vec![("application_name".into(), "a b\\c".into())]
        );
        assert!(parse_options("-x").is_err());
    }

    #[test]
    fn tenants_may_send_only_listed_settings_with_allowed_values() {
        let s = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let cases: &[(&str, &str, bool)] = &[
            ("application_name", "web", true),
            ("DateStyle", "ISO, MDY", true),
            ("TimeZone", "UTC", true),
            ("client_encoding", "UTF8", true),
            ("client_encoding", "SQL_ASCII", false),
            ("standard_conforming_strings", "on", true),
            ("standard_conforming_strings", "off", false),
            ("role", "postgres", false),
            ("session_authorization", "postgres", false),
            ("search_path", "evil", false),
            ("session_replication_role", "replica", false),
            ("orgwall.tenant", "x", false),
        ];
        for (k, v, ok) in cases {
            assert_eq!(check(Role::Tenant, &s(k, v)).is_ok(), *ok, "{k}={v}");
            assert_eq!(check(Role::Switcher, &s(k, v)).is_ok(), *ok, "{k}={v}");
            assert!(check(Role::Admin, &s(k, v)).is_ok());
        }
    }
}
