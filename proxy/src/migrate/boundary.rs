//! What migration `0004_tenant_boundary` creates, as the rest of Orgwall names it: the tenant
//! role, the signed-context format `orgwall.current_org()` accepts, and the role's password.
//!
//! Token: `<mac>.<expiry>.<org>` — `mac` is the lowercase hex HMAC-SHA256 of the UTF-8 bytes of
//! `<expiry>.<org>` under `orgwall.tenant_key.key`, `expiry` a decimal Unix time in seconds
//! (1–12 digits), `org` the org_id as it is (it may contain dots; empty means no tenant).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio_postgres::Client;

use super::MigrateError;
use crate::scram::Verifier;

/// The login role of tenant traffic upstream (cluster-wide).
pub const TENANT_ROLE: &str = "orgwall_tenant";
/// The migration that creates the role, the key, `orgwall.current_org()` and the policies.
pub const MIGRATION: &str = "0004_tenant_boundary";
/// The setting `orgwall.current_org()` reads.
pub const TENANT_SETTING: &str = "orgwall.tenant";
/// Reads the signing key (owner only; `bytea`, 32 bytes).
pub const KEY_QUERY: &str = "SELECT key FROM orgwall.tenant_key WHERE id = 1";
/// The row-level-security policy on each tenant table.
pub const POLICY: &str = "orgwall_tenant_isolation";
/// The largest expiry the function accepts (12 digits).
pub const MAX_EXPIRY: u64 = 999_999_999_999;

/// The tables with row-level security and the policy: the eight of 0002, the balances of 0003
/// and organizations (scoped by `id`; the tenant may read and rename its own row only).
pub const RLS_TABLES: [&str; 10] = {
    let t = super::verify::TENANT_TABLES;
    [
        "organizations",
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
        t[6],
        t[7],
        "inventory_balances",
    ]
};

/// The tables referenced by tenant-scoped foreign keys, each with `UNIQUE (org_id, id)` named
/// `<table>_orgid_id_key`.
pub const REFERENCED_TABLES: [&str; 4] = ["users", "items", "locations", "count_sheets"];

/// One tenant-scoped foreign key: `(org_id, column) REFERENCES referenced (org_id, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantForeignKey {
    pub table: &'static str,
    pub column: &'static str,
    pub referenced: &'static str,
    /// ON DELETE CASCADE (else NO ACTION), as in 0001.
    pub cascade: bool,
}

impl TenantForeignKey {
    /// The constraint's name as stored: PostgreSQL's own for `(org_id, column)`, except on
    /// inventory_balances, which keeps 0003's names (`inventory_balances_itemId_fkey`).
    pub fn name(&self) -> String {
        match self.table {
            "inventory_balances" => format!("{}_{}_fkey", self.table, self.column.replace('_', "")),
            t => format!("{t}_org_id_{}_fkey", self.column),
        }
    }
}

const fn fk(
    table: &'static str,
    column: &'static str,
    referenced: &'static str,
    cascade: bool,
) -> TenantForeignKey {
    TenantForeignKey {
        table,
        column,
        referenced,
        cascade,
    }
}

/// Every foreign key between tenant tables, as 0004 leaves it.
pub const TENANT_FOREIGN_KEYS: [TenantForeignKey; 10] = [
    fk("inventory_ledger", "item_id", "items", false),
    fk("inventory_ledger", "location_id", "locations", false),
    fk("inventory_ledger", "user_id", "users", false),
    fk("count_sheets", "location_id", "locations", false),
    fk("count_sheets", "created_by", "users", false),
    fk("count_lines", "count_sheet_id", "count_sheets", true),
    fk("count_lines", "item_id", "items", false),
    fk("count_lines", "counted_by", "users", false),
    fk("inventory_balances", "item_id", "items", false),
    fk("inventory_balances", "location_id", "locations", false),
];

/// The token `orgwall.current_org()` turns into `org` until `expiry_unix` (Unix seconds, at
/// most [`MAX_EXPIRY`]): the proxy's own signing, [`crate::boundary::sign`].
pub use crate::boundary::sign as sign_tenant;

/// The tenant role's password (`migrate up --tenant-password`); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantPassword(String);

impl TenantPassword {
    /// The SCRAM-SHA-256 verifier sent to PostgreSQL in place of the password, so the clear
    /// text never reaches the server (nor its statement log). A verifier given as the password
    /// is used as it is.
    pub fn verifier(&self) -> String {
        if self.0.starts_with("SCRAM-SHA-256$") && Verifier::parse(&self.0).is_ok() {
            return self.0.clone();
        }
        let v = Verifier::from_password(&self.0);
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            v.iterations,
            B64.encode(&v.salt),
            B64.encode(v.stored_key),
            B64.encode(v.server_key)
        )
    }
}

impl std::fmt::Debug for TenantPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantPassword(***)")
    }
}

impl std::str::FromStr for TenantPassword {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the tenant password must not be empty".into());
        }
        if s.contains('\0') {
            return Err("the tenant password must not contain NUL".into());
        }
        Ok(TenantPassword(s.to_string()))
    }
}

/// `ALTER ROLE orgwall_tenant PASSWORD '<verifier>'`. The role is cluster-wide: a runner on
/// another database altering it at the same moment makes PostgreSQL fail one of the two with
/// "tuple concurrently updated", which is retried.
pub(crate) async fn set_password(client: &Client, pw: &TenantPassword) -> Result<(), MigrateError> {
    let sql = format!(
        "ALTER ROLE {TENANT_ROLE} PASSWORD {}",
        crate::sql::quote_literal(&pw.verifier())
    );
    let concurrent = |e: &tokio_postgres::Error| {
        e.as_db_error().is_some_and(|d| {
            d.code() == &tokio_postgres::error::SqlState::INTERNAL_ERROR
                && d.message().contains("concurrently updated")
        })
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 && concurrent(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => {
                let what = format!("setting the password of {TENANT_ROLE}");
                return Err(MigrateError::sql(what)(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format_matches_a_reference_hmac() {
        // python3: hmac.new(bytes(range(32)), b"1700000000.org.a", "sha256").hexdigest()
        let key: Vec<u8> = (0u8..32).collect();
        let t = sign_tenant(&key, "org.a", 1_700_000_000);
        assert_eq!(
            t,
            "6bf62b48590b9e9a3acaa1ac98cf3d27554a61656b59a2cbc5bde5ead6344924.1700000000.org.a"
        );
        let (mac, rest) = t.split_at(64);
        assert!(mac
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(rest, ".1700000000.org.a");
        // Non-ASCII orgs are signed as UTF-8.
        assert_eq!(
            sign_tenant(&key, "ü", 5),
            "f8fd0aadaa09c78b81d4ded564fc902d67fefda875d06746dfaf692cfbdef550.5.ü"
        );
    }

    #[test]
    fn foreign_key_names_match_the_migration() {
        let up = include_str!("../../../migrations/0004_tenant_boundary/up.sql");
        let names: Vec<String> = TENANT_FOREIGN_KEYS.iter().map(|f| f.name()).collect();
        assert_eq!(names[0], "inventory_ledger_org_id_item_id_fkey");
        assert_eq!(names[8], "inventory_balances_itemid_fkey");
        assert_eq!(names[9], "inventory_balances_locationid_fkey");
        for n in &names {
            assert_eq!(up.matches(&format!("'{n}'")).count(), 2, "{n} in up.sql");
        }
    }

    #[test]
    fn password_is_never_shown_and_becomes_a_verifier() {
        let pw: TenantPassword = "s3cret'pw".parse().unwrap();
        assert_eq!(format!("{pw:?}"), "TenantPassword(***)");
        let v = pw.verifier();
        assert!(!v.contains("s3cret"), "{v}");
        assert!(Verifier::parse(&v).unwrap().check_password("s3cret'pw"));
        let given: TenantPassword = v.parse().unwrap();
        assert_eq!(given.verifier(), v);
        assert!("".parse::<TenantPassword>().is_err());
        assert!("a\0b".parse::<TenantPassword>().is_err());
    }
}
