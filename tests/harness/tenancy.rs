//! Tenant-isolation fixtures (issue 3): a database with the seed's post-migration schema and two
//! tenants whose data overlaps in the nasty ways, a proxy configured with tenant, second-tenant
//! and switcher logins, a PostgreSQL row-level-security reference role, per-tenant checksums,
//! a schema fingerprint, HS256 tokens, and row rendering that compares results byte for byte.
//!
//! The reference for "what may tenant A see or change" is PostgreSQL itself: a non-owner role
//! with `FORCE`d RLS policies `org_id = current_setting('app.org_id')` on every tenant table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use crate::clients::{connect, describe};
use crate::pg::{TestDb, SUPERUSER_PASSWORD};
use crate::proxy::{Login, ProxyOptions, TestProxy, TENANT};

/// Tenant A: the harness's standard tenant login (`acme`, org `org_a`).
pub const TENANT_A: Login = TENANT;

/// Tenant B, whose rows A must never see or change.
pub const TENANT_B: Login = Login {
    name: "globex",
    password: "globex-pw",
    org_id: "org_b",
    role: "tenant",
};

/// A service account that binds a tenant with `SET orgwall.org_id` or a JWT. Its configured
/// org_id is one with no rows, so a proxy that wrongly binds it at login shows nothing useful.
pub const SWITCHER: Login = Login {
    name: "svc",
    password: "svc-pw",
    org_id: "org_default",
    role: "switcher",
};

/// The HS256 secret in the test proxy's `[jwt]` section.
pub const JWT_SECRET: &str = "e2e-jwt-secret-do-not-use";

/// Every table the catalog must treat as tenant data (organizations is scoped by `id`): the
/// tables migration 0004 puts under row-level security.
pub const TENANT_TABLES: [&str; 10] = orgwall::migrate::boundary::RLS_TABLES;

/// The tenant column of `table` (`id` for organizations).
pub fn tenant_column(table: &str) -> &'static str {
    if table == "organizations" {
        "id"
    } else {
        "org_id"
    }
}

/// Marker present in B's free-text columns and absent from A's data: a result that contains
/// it (or B's org id or a B-only row id) leaked B.
pub const B_MARKER: &str = "SECRET";

/// Two tenants with the same emails, item numbers, location names and count numbers; ledger
/// rows for both (the balance trigger fills `inventory_balances`). No row references another
/// tenant's (migration 0004's tenant-scoped foreign keys make that impossible). Ids are globally unique and say whose
/// they are (`*_a*`, `*_b*`), so leaks are easy to name.
pub const SEED_SQL: &str = r#"
BEGIN;
INSERT INTO organizations (id, name) VALUES ('org_a', 'Alpha'), ('org_b', 'Beta SECRET');
INSERT INTO users (id, org_id, email, name, role) VALUES
  ('u_a1', 'org_a', 'alice@shared.test', 'Alice',        'admin'),
  ('u_a2', 'org_a', 'bob@shared.test',   'Bob',          'member'),
  ('u_a3', 'org_a', 'only-a@a.test',     NULL,           'member'),
  ('u_b1', 'org_b', 'alice@shared.test', 'Alice SECRET', 'admin'),
  ('u_b2', 'org_b', 'bob@shared.test',   'Bob SECRET',   'member'),
  ('u_b3', 'org_b', 'carol@b.test',      'Carol SECRET', 'member');
INSERT INTO items (id, org_id, item_number, description, unit_of_measure, active) VALUES
  ('i_a1', 'org_a', 'W-100', 'Anvil',          'EA', true),
  ('i_a2', 'org_a', 'W-200', 'Skates',         'PR', true),
  ('i_a3', 'org_a', 'W-300', NULL,             'EA', false),
  ('i_b1', 'org_b', 'W-100', 'Hammock SECRET', 'EA', true),
  ('i_b2', 'org_b', 'W-200', 'Device SECRET',  'KIT', true),
  ('i_b4', 'org_b', 'W-400', 'Only B SECRET',  'EA', false);
INSERT INTO locations (id, org_id, site, name, description) VALUES
  ('l_a1', 'org_a', 'Main', 'A-01', 'Aisle A'),
  ('l_a2', 'org_a', 'Main', 'B-01', NULL),
  ('l_b1', 'org_b', 'Main', 'A-01', 'SECRET bay'),
  ('l_b2', 'org_b', 'East', 'A-01', 'SECRET east');
INSERT INTO inventory_ledger (id, org_id, item_id, location_id, lot_id, quantity_delta, reason, reference, user_id) VALUES
  ('led_a1', 'org_a', 'i_a1', 'l_a1', NULL,    100,  'receipt', 'PO-1', 'u_a1'),
  ('led_a2', 'org_a', 'i_a1', 'l_a1', NULL,    -15,  'issue',   'SO-1', 'u_a2'),
  ('led_a3', 'org_a', 'i_a2', 'l_a2', 'LOT-7',  40.5,'receipt', 'PO-2', 'u_a1'),
  ('led_a4', 'org_a', 'i_a3', 'l_a2', NULL,      3,  'receipt', 'PO-X', 'u_a3'),
  ('led_b1', 'org_b', 'i_b1', 'l_b1', NULL,      7,  'receipt', 'PO-1', 'u_b1'),
  ('led_b2', 'org_b', 'i_b2', 'l_b1', 'LOT-7',  12,  'receipt', 'PO-2', 'u_b1'),
  ('led_b3', 'org_b', 'i_b2', 'l_b1', 'LOT-7',  -2,  'issue',   'SO-1', 'u_b2'),
  ('led_b4', 'org_b', 'i_b4', 'l_b2', NULL,     50,  'receipt', 'PO-Y', 'u_b3');
INSERT INTO count_sheets (id, org_id, count_number, location_id, status, created_by) VALUES
  ('cs_a1', 'org_a', 'CNT-0001', 'l_a1', 'open',   'u_a1'),
  ('cs_a2', 'org_a', 'CNT-0002', 'l_a2', 'closed', 'u_a2'),
  ('cs_b1', 'org_b', 'CNT-0001', 'l_b1', 'open',   'u_b1');
INSERT INTO count_lines (id, org_id, count_sheet_id, item_id, expected_quantity, counted_quantity, counted_by) VALUES
  ('cl_a1', 'org_a', 'cs_a1', 'i_a1', 85, 84, 'u_a2'),
  ('cl_a2', 'org_a', 'cs_a2', 'i_a2', 40, 41, 'u_a1'),
  ('cl_b1', 'org_b', 'cs_b1', 'i_b1',  7,  7, 'u_b2'),
  ('cl_b2', 'org_b', 'cs_b1', 'i_b2', 10,  9, 'u_b1');
INSERT INTO feature_flags (id, org_id, key, enabled, description) VALUES
  ('ff_a1', 'org_a', 'cycle_counts', true,  'Cycle counting'),
  ('ff_b1', 'org_b', 'cycle_counts', false, 'SECRET flag'),
  ('ff_b2', 'org_b', 'beta',         true,  'SECRET beta');
INSERT INTO audit_logs (id, org_id, actor, action, entity_type, entity_id, payload) VALUES
  ('aud_a1', 'org_a', 'alice@shared.test', 'item.create', 'item', 'i_a1', '{"item_number": "W-100"}'),
  ('aud_a2', 'org_a', 'bob@shared.test',   'item.update', 'item', 'i_b1', '{"qty": 3}'),
  ('aud_b1', 'org_b', 'alice@shared.test', 'item.create', 'item', 'i_b1', '{"item_number": "W-100", "note": "SECRET"}');
COMMIT;
"#;

/// A fresh database with migrations 0001–0003 applied (by the proxy's own runner) and
/// [`SEED_SQL`] loaded.
pub async fn tenant_db(label: &str) -> TestDb {
    seed(TestDb::create(label).await).await
}

/// Like [`tenant_db`], on a given server (a dedicated one, for tests that restart it).
pub async fn tenant_db_on(server: std::sync::Arc<crate::pg::PgServer>, label: &str) -> TestDb {
    seed(TestDb::create_on(server, label).await).await
}

async fn seed(db: TestDb) -> TestDb {
    migrate(&db).await;
    db.psql(SEED_SQL).await;
    db
}

/// Applies the embedded migrations to `db` with `orgwall::migrate::up`.
pub async fn migrate(db: &TestDb) {
    use orgwall::migrate::{backup::BackupPolicy, RunOptions, Target};
    let target = Target::from_url(&db.upstream_url()).expect("migration target");
    let opts = RunOptions {
        backup: BackupPolicy::Skip,
        tenant_password: Some(
            crate::proxy::TENANT_ROLE_PASSWORD
                .parse()
                .expect("a valid password"),
        ),
        ..RunOptions::default()
    };
    orgwall::migrate::up(&target, None, &opts)
        .await
        .unwrap_or_else(|e| panic!("migrating {}: {e}", db.name));
}

/// The SQL an operator runs to put a tenant table of their own behind the second wall (the
/// README's "Two walls"): Orgwall's policy and DML rights for the tenant identity. Needs
/// migration 0004 (the role and `orgwall.current_org()`).
pub fn protect_sql(table: &str, column: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         CREATE POLICY orgwall_tenant_isolation ON {table} FOR ALL TO orgwall_tenant \
           USING ({column} = (SELECT orgwall.current_org())) \
           WITH CHECK ({column} = (SELECT orgwall.current_org()));\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO orgwall_tenant;\n"
    )
}

/// The `[tenancy]`, `[jwt]` and extra `[[users]]` sections of a tenant-isolation proxy.
pub fn tenancy_toml() -> String {
    tenancy_toml_with_jwt(&format!("hs256_secret = \"{JWT_SECRET}\"\n"))
}

/// [`tenancy_toml`] with `jwt` (TOML lines, `[[jwt.keys]]` tables last) as the `[jwt]` section.
pub fn tenancy_toml_with_jwt(jwt: &str) -> String {
    let mut t = format!("[tenancy]\ncolumn = \"org_id\"\nschemas = [\"public\"]\n[jwt]\n{jwt}\n");
    for u in [TENANT_B, SWITCHER] {
        t += &format!(
            "[[users]]\nname = \"{}\"\npassword = \"{}\"\norg_id = \"{}\"\nrole = \"{}\"\n",
            u.name, u.password, u.org_id, u.role
        );
    }
    t
}

/// A proxy in front of `db` (whose schema must already exist: the catalog is read at start).
pub async fn tenant_proxy(db: &TestDb, opts: ProxyOptions) -> TestProxy {
    TestProxy::start_with_extra(db, opts, &tenancy_toml()).await
}

/// [`tenant_proxy`] with its own `[jwt]` section (see [`tenancy_toml_with_jwt`]).
pub async fn tenant_proxy_with_jwt(db: &TestDb, opts: ProxyOptions, jwt: &str) -> TestProxy {
    TestProxy::start_with_extra(db, opts, &tenancy_toml_with_jwt(jwt)).await
}

/// A superuser connection straight to PostgreSQL.
pub async fn admin_direct(db: &TestDb) -> Client {
    connect(&db.direct_conn_str()).await
}

/// Creates the RLS reference role for `db` (a LOGIN role owning nothing, DML grants only) and
/// forces `org_id = current_setting('app.org_id')` on every tenant table. The RLS copy also
/// defaults `org_id` to the setting, the way Orgwall injects it, so INSERTs without the
/// column mean the same on both sides. Returns the role name.
pub async fn setup_rls(db: &TestDb) -> String {
    let role = format!("rls_{}", db.name);
    let mut sql = format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'rls-pw';\n\
         GRANT USAGE ON SCHEMA public TO {role};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};\n"
    );
    for t in TENANT_TABLES {
        let c = tenant_column(t);
        let _ = write!(
            sql,
            "ALTER TABLE public.{t} ENABLE ROW LEVEL SECURITY;\n\
             ALTER TABLE public.{t} FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY tenant_only ON public.{t} TO {role} \
               USING ({c} = current_setting('app.org_id')) \
               WITH CHECK ({c} = current_setting('app.org_id'));\n"
        );
        if c == "org_id" {
            let _ = writeln!(
                sql,
                "ALTER TABLE public.{t} ALTER COLUMN org_id SET DEFAULT current_setting('app.org_id');"
            );
        }
    }
    db.psql(&sql).await;
    role
}

/// A direct connection as the RLS role, confined to `org`.
pub async fn rls_client(db: &TestDb, role: &str, org: &str) -> Client {
    let c = connect(&format!(
        "host=127.0.0.1 port={} user={role} password=rls-pw dbname={} application_name=rls-reference",
        db.server.port(),
        db.name
    ))
    .await;
    c.batch_execute(&format!("SET app.org_id = '{org}'"))
        .await
        .expect("SET app.org_id");
    c
}

/// Per table, an md5 over the rows of `org` (as `row::text`, sorted). With `data_only`, the
/// `created_at` / `updated_at` columns are left out so two databases that ran the same
/// writes at different times compare equal.
pub async fn org_checksums(admin: &Client, org: &str, data_only: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in TENANT_TABLES {
        let c = tenant_column(t);
        let row = if data_only {
            "(to_jsonb(t) - 'created_at' - 'updated_at')::text"
        } else {
            "t::text"
        };
        let sql = format!(
            "SELECT coalesce(md5(string_agg({row}, ',' ORDER BY {row})), 'empty') || ':' || count(*) \
             FROM public.{t} t WHERE {c} = $1"
        );
        let r = admin
            .query_one(&sql, &[&org])
            .await
            .unwrap_or_else(|e| panic!("checksum of {t}: {}", describe(&e)));
        out.insert(t.to_string(), r.get::<_, String>(0));
    }
    out
}

/// Rows of `org` in `table` as sorted text (for failure messages).
pub async fn org_rows(admin: &Client, table: &str, org: &str) -> Vec<String> {
    let sql = format!(
        "SELECT t::text FROM public.{table} t WHERE {} = $1 ORDER BY 1",
        tenant_column(table)
    );
    admin
        .query(&sql, &[&org])
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .unwrap_or_else(|e| vec![format!("<error {}>", describe(&e))])
}

/// The database's schema as `pg_dump --schema-only` prints it, for before/after comparisons.
pub async fn schema_dump(db: &TestDb) -> String {
    let out = tokio::process::Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-comments",
            "-h",
            "127.0.0.1",
            "-p",
            &db.server.port().to_string(),
            "-U",
            "postgres",
            &db.name,
        ])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .output()
        .await
        .expect("run pg_dump (apt-get install -y postgresql-client)");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A catalog fingerprint that pg_dump does not show: roles, their attributes and memberships,
/// database-level settings.
pub async fn cluster_fingerprint(admin: &Client) -> String {
    let rows = admin
        .query(
            "SELECT string_agg(format('%s %s %s %s %s', rolname, rolsuper, rolcreaterole, \
               rolbypassrls, rolcanlogin), E'\\n' ORDER BY rolname) FROM pg_roles \
             UNION ALL SELECT coalesce(string_agg(setconfig::text, ';'), '') FROM pg_db_role_setting \
             UNION ALL SELECT count(*)::text FROM pg_auth_members",
            &[],
        )
        .await
        .expect("cluster fingerprint");
    rows.iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A compact HS256 JWT for `claims` (a JSON object), signed with `secret`.
pub fn hs256_token(secret: &[u8], claims: &str) -> String {
    hs256_token_kid(secret, None, claims)
}

/// [`hs256_token`] with a `kid` header naming the key.
pub fn hs256_token_kid(secret: &[u8], kid: Option<&str>, claims: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Mac, SimpleHmac};
    let header = match kid {
        None => r#"{"alg":"HS256","typ":"JWT"}"#.to_string(),
        Some(k) => format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{k}"}}"#),
    };
    let header = URL_SAFE_NO_PAD.encode(header.as_bytes());
    let payload = URL_SAFE_NO_PAD.encode(claims.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// An unsigned (`alg: none`) JWT, which a verifier must refuse.
pub fn unsigned_token(claims: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.as_bytes())
    )
}

/// Seconds since the epoch (for `exp` claims).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A value exactly as PostgreSQL sent it (binary format), whatever its type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawValue(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A result set: column names and types, and rows rendered as strings, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl ResultSet {
    /// Whether any cell mentions tenant B (its org id, a B-only row id, or [`B_MARKER`]).
    pub fn leaks_b(&self) -> Option<String> {
        self.rows.iter().flatten().find(|c| mentions_b(c)).cloned()
    }
}

/// Whether a rendered cell carries something only tenant B has.
pub fn mentions_b(cell: &str) -> bool {
    const B_IDS: [&str; 14] = [
        "org_b", "u_b1", "u_b2", "u_b3", "i_b1", "i_b2", "i_b4", "l_b1", "l_b2", "led_b", "cs_b1",
        "cl_b", "ff_b", "aud_b",
    ];
    cell.contains(B_MARKER) || cell.contains("Beta") || B_IDS.iter().any(|id| cell.contains(id))
}

/// Whether a rendered cell carries something of a row only tenant B has: like [`mentions_b`]
/// without `org_b` and `i_b1`, which also appear where an attacker echoes its own input
/// (`set_config('x', 'org_b', …)`) and in A's own audit log (`aud_a2` names item `i_b1`).
/// Every row of B still carries one of the others (its own id, [`B_MARKER`], a B location).
pub fn mentions_b_row(cell: &str) -> bool {
    const B_ONLY: [&str; 12] = [
        "u_b1", "u_b2", "u_b3", "i_b2", "i_b4", "l_b1", "l_b2", "led_b", "cs_b1", "cl_b", "ff_b",
        "aud_b",
    ];
    cell.contains(B_MARKER) || cell.contains("Beta") || B_ONLY.iter().any(|id| cell.contains(id))
}

/// Renders extended-protocol rows: name and type per column, each value as the hex of its
/// binary encoding (lossless and type-independent).
pub fn render_rows(rows: &[Row]) -> ResultSet {
    let columns = rows
        .first()
        .map(|r| {
            r.columns()
                .iter()
                .map(|c| format!("{}:{}", c.name(), c.type_()))
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.get::<_, RawValue>(i).0 {
                    None => "NULL".to_string(),
                    Some(b) => match std::str::from_utf8(&b) {
                        // Text-like values stay readable; others become hex.
                        Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => {
                            format!("'{s}'")
                        }
                        _ => format!("x{}", hex(&b)),
                    },
                })
                .collect()
        })
        .collect();
    out.sort();
    ResultSet { columns, rows: out }
}

/// Renders simple-protocol results (all statements' rows, text format), sorted.
pub fn render_simple(msgs: &[SimpleQueryMessage]) -> ResultSet {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) if columns.is_empty() => {
                columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => rows.push(
                (0..r.len())
                    .map(|i| r.get(i).map_or("NULL".to_string(), |v| format!("'{v}'")))
                    .collect(),
            ),
            _ => {}
        }
    }
    rows.sort();
    ResultSet { columns, rows }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// A query parameter of the corpus: its value, its type for `query_typed`, and its literal
/// form for the simple protocol.
#[derive(Debug, Clone, Copy)]
pub enum P {
    T(&'static str),
    I(i32),
    B(bool),
}

impl P {
    pub fn ty(&self) -> Type {
        match self {
            P::T(_) => Type::TEXT,
            P::I(_) => Type::INT4,
            P::B(_) => Type::BOOL,
        }
    }
    pub fn literal(&self) -> String {
        match self {
            P::T(s) => format!("'{}'::text", s.replace('\'', "''")),
            P::I(i) => format!("{i}"),
            P::B(b) => format!("{b}"),
        }
    }
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            P::T(s) => s,
            P::I(i) => i,
            P::B(b) => b,
        }
    }
}

/// `sql` with `$n` replaced by the literal of `params[n-1]` (highest n first, so `$1` never
/// eats the start of `$10`), for the simple protocol.
pub fn inline_params(sql: &str, params: &[P]) -> String {
    let mut s = sql.to_string();
    for (i, p) in params.iter().enumerate().rev() {
        s = s.replace(&format!("${}", i + 1), &p.literal());
    }
    s
}

/// The typed parameter list of `params`, for `query_typed`.
pub fn typed_params(params: &[P]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.as_sql(), p.ty())).collect()
}

/// The untyped parameter list of `params`, for `query` / prepared statements.
pub fn untyped_params(params: &[P]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_sql()).collect()
}

/// How a statement ended: rows (or a row count), or an error with SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Rows(ResultSet),
    Count(u64),
    Error { code: String, message: String },
}

impl Outcome {
    pub fn from_error(e: &tokio_postgres::Error) -> Outcome {
        match e.as_db_error() {
            Some(db) => Outcome::Error {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            },
            None => Outcome::Error {
                code: "client".into(),
                message: format!("{e}"),
            },
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Error { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether this is an Orgwall refusal (`orgwall:`-prefixed error).
    pub fn is_orgwall_refusal(&self) -> bool {
        matches!(self, Outcome::Error { message, .. } if message.starts_with("orgwall:"))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Rows(r) => {
                write!(f, "{} row(s) {:?}", r.rows.len(), r.columns)?;
                for row in r.rows.iter().take(12) {
                    write!(f, "\n      {}", row.join(" | "))?;
                }
                if r.rows.len() > 12 {
                    write!(f, "\n      …")?;
                }
                Ok(())
            }
            Outcome::Count(n) => write!(f, "{n} row(s) affected"),
            Outcome::Error { code, message } => write!(f, "ERROR {code}: {message}"),
        }
    }
}

/// Runs `sql` with the simple protocol and collects its outcome.
pub async fn run_simple(c: &Client, sql: &str) -> Outcome {
    match c.simple_query(sql).await {
        Ok(msgs) => {
            let rs = render_simple(&msgs);
            let has_rows_desc = msgs
                .iter()
                .any(|m| matches!(m, SimpleQueryMessage::RowDescription(_)));
            if has_rows_desc {
                Outcome::Rows(rs)
            } else {
                let n = msgs
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::CommandComplete(n) => Some(*n),
                        _ => None,
                    })
                    .sum();
                Outcome::Count(n)
            }
        }
        Err(e) => Outcome::from_error(&e),
    }
}

/// Runs `sql` with an unnamed statement (`query_typed`, one round trip: Parse/Bind/Execute).
pub async fn run_extended(c: &Client, sql: &str, params: &[P]) -> Outcome {
    match c.query_typed(sql, &typed_params(params)).await {
        Ok(rows) => Outcome::Rows(render_rows(&rows)),
        Err(e) => Outcome::from_error(&e),
    }
}

/// Prepares `sql` as a named statement and runs it `times` times; every run must agree.
pub async fn run_prepared(c: &Client, sql: &str, params: &[P], times: usize) -> Outcome {
    let types: Vec<Type> = params.iter().map(P::ty).collect();
    let stmt = match c.prepare_typed(sql, &types).await {
        Ok(s) => s,
        Err(e) => return Outcome::from_error(&e),
    };
    let mut first: Option<Outcome> = None;
    for i in 0..times {
        let o = match c.query(&stmt, &untyped_params(params)).await {
            Ok(rows) => Outcome::Rows(render_rows(&rows)),
            Err(e) => Outcome::from_error(&e),
        };
        match &first {
            None => first = Some(o),
            Some(f) if *f != o => {
                return Outcome::Error {
                    code: "inconsistent".into(),
                    message: format!("execution {i} differs from the first: {o} vs {f}"),
                }
            }
            Some(_) => {}
        }
    }
    first.unwrap_or(Outcome::Count(0))
}

/// Runs a write with the extended protocol and returns the affected-row count.
pub async fn run_write(c: &Client, sql: &str, params: &[P]) -> Outcome {
    match c.execute_typed(sql, &typed_params(params)).await {
        Ok(n) => Outcome::Count(n),
        Err(e) => Outcome::from_error(&e),
    }
}
