//! Migration 0004 (the tenant boundary, DESIGN.md §4a) against a real PostgreSQL, logged in as
//! the tenant role itself: row-level security over the signed context on all ten tables, the
//! function's HMAC against an independent one, every malformed, forged or expired context
//! refused, the role's least privilege, tenant-scoped foreign keys, every step resumable, and
//! the cluster-wide role across databases (kept while another database uses it).
//! (Up/down/up on the 120k-row fixture with `pg_dump` equality is in `migrate.rs`.)

use hmac::{Hmac, Mac};
use orgwall::migrate::backup::BackupPolicy;
use orgwall::migrate::boundary::{sign_tenant, RLS_TABLES, TENANT_ROLE};
use orgwall::migrate::verify::{self, Check, Outcome};
use orgwall::migrate::{self, plan, MigrateError, RunOptions, Target};
use orgwall_e2e::{bounded, connect, dedicated_postgres, expect_db_error, TestDb};
use sha2::Sha256;
use tokio_postgres::Client;

/// The tenant role's password in every test of this binary (the role is cluster-wide).
const PW: &str = "tenant-e2e-pw";

fn target(db: &TestDb) -> Target {
    Target::from_url(&db.upstream_url()).unwrap()
}

fn opts() -> RunOptions {
    RunOptions {
        backup: BackupPolicy::Skip,
        batch_size: 100,
        ..RunOptions::default()
    }
}

fn with_password() -> RunOptions {
    RunOptions {
        tenant_password: Some(PW.parse().unwrap()),
        ..opts()
    }
}

fn tenant_conn_str(db: &TestDb) -> String {
    format!(
        "host=127.0.0.1 port={} user={TENANT_ROLE} password={PW} dbname={}",
        db.server.port(),
        db.name
    )
}

/// Two tenants in every table, each row referencing its own tenant's rows only.
const SEED: &str = "
INSERT INTO organizations (id, name) VALUES ('org_a', 'A'), ('org_b', 'B');
INSERT INTO users (id, org_id, email) VALUES
  ('u_a1', 'org_a', 'a@x.test'), ('u_a2', 'org_a', 'b@x.test'), ('u_b1', 'org_b', 'a@x.test');
INSERT INTO items (id, org_id, item_number) VALUES
  ('i_a1', 'org_a', 'W-1'), ('i_a2', 'org_a', 'W-2'), ('i_a8', 'org_a', 'W-8'),
  ('i_a9', 'org_a', 'W-9'), ('i_b1', 'org_b', 'W-1');
INSERT INTO locations (id, org_id, site, name) VALUES
  ('l_a1', 'org_a', 'Main', 'A'), ('l_b1', 'org_b', 'Main', 'A');
INSERT INTO inventory_ledger (id, org_id, item_id, location_id, lot_id, quantity_delta, user_id) VALUES
  ('e_a1', 'org_a', 'i_a1', 'l_a1', NULL, 10, 'u_a1'),
  ('e_a2', 'org_a', 'i_a2', 'l_a1', 'L1', 5, NULL),
  ('e_b1', 'org_b', 'i_b1', 'l_b1', NULL, 7, 'u_b1');
INSERT INTO count_sheets (id, org_id, count_number, location_id, created_by) VALUES
  ('c_a1', 'org_a', 'C-1', 'l_a1', 'u_a1'), ('c_b1', 'org_b', 'C-1', 'l_b1', NULL);
INSERT INTO count_lines (id, org_id, count_sheet_id, item_id, counted_quantity, counted_by) VALUES
  ('cl_a1', 'org_a', 'c_a1', 'i_a1', 3, 'u_a2'), ('cl_b1', 'org_b', 'c_b1', 'i_b1', 4, 'u_b1');
INSERT INTO audit_logs (id, org_id, action) VALUES ('a_a1', 'org_a', 'x'), ('a_b1', 'org_b', 'y');
INSERT INTO feature_flags (id, org_id, key) VALUES ('f_a1', 'org_a', 'k'), ('f_b1', 'org_b', 'k');
";

fn col(table: &str) -> &'static str {
    if table == "organizations" {
        "id"
    } else {
        "org_id"
    }
}

fn failed(checks: &[Check]) -> Vec<&Check> {
    checks
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .collect()
}

/// All migrations (the password set), the seed, and connections as owner and as tenant.
struct Fixture {
    db: TestDb,
    owner: Client,
    tenant: Client,
    key: Vec<u8>,
    /// The database's clock (Unix seconds).
    now: u64,
}

impl Fixture {
    async fn new(label: &str) -> Fixture {
        let db = TestDb::create(label).await;
        let report = migrate::up(&target(&db), None, &with_password())
            .await
            .unwrap();
        assert!(report.tenant_password_set);
        db.psql(SEED).await;
        let checks = verify::verify(&target(&db)).await.unwrap();
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        let owner = connect(&db.direct_conn_str()).await;
        let r = owner
            .query_one(
                "SELECT key, extract(epoch FROM now())::bigint FROM orgwall.tenant_key",
                &[],
            )
            .await
            .unwrap();
        let (key, now): (Vec<u8>, i64) = (r.get(0), r.get(1));
        let tenant = connect(&tenant_conn_str(&db)).await;
        Fixture {
            db,
            owner,
            tenant,
            key,
            now: now as u64,
        }
    }

    /// A token as Orgwall issues it: signed, and registered (as the owner) in
    /// `orgwall.tenant_tokens`, which the policies read.
    async fn token(&self, org: &str) -> String {
        let token = sign_tenant(&self.key, org, self.now + 600);
        self.owner
            .execute(
                "INSERT INTO orgwall.tenant_tokens (token, org, expires) \
                 VALUES ($1, $2, now() + interval '10 minutes') ON CONFLICT DO NOTHING",
                &[&token, &org],
            )
            .await
            .unwrap();
        token
    }

    async fn set(&self, token: &str) {
        self.tenant
            .query_one("SELECT set_config('orgwall.tenant', $1, false)", &[&token])
            .await
            .unwrap();
    }

    async fn current_org(&self) -> Option<String> {
        self.tenant
            .query_one("SELECT orgwall.current_org()", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Rows the tenant sees in `table`: all, and those not of `org`.
    async fn seen(&self, table: &str, org: &str) -> (i64, i64) {
        let r = self
            .tenant
            .query_one(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE {} IS DISTINCT FROM $1) FROM {table}",
                    col(table)
                ),
                &[&org],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    }

    async fn owner_count(&self, table: &str, org: &str) -> i64 {
        self.owner
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {} = $1", col(table)),
                &[&org],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_in_sql_matches_an_independent_implementation() {
    bounded(120, async {
        let f = Fixture::new("boundary_hmac").await;
        assert_eq!(f.key.len(), 32);
        let r = f
            .owner
            .query_one("SELECT ipad, opad FROM orgwall.tenant_key", &[])
            .await
            .unwrap();
        let (ipad, opad): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
        let mut padded = f.key.clone();
        padded.resize(64, 0);
        assert_eq!(ipad, padded.iter().map(|b| b ^ 0x36).collect::<Vec<_>>());
        assert_eq!(opad, padded.iter().map(|b| b ^ 0x5c).collect::<Vec<_>>());
        let long = "x.".repeat(700);
        for msg in ["", "1700000000.org_a", "9.ü.with.dots", long.as_str()] {
            let sql: String = f
                .owner
                .query_one(
                    "SELECT encode(sha256(opad || sha256(ipad || convert_to($1, 'UTF8'))), 'hex')
                     FROM orgwall.tenant_key",
                    &[&msg],
                )
                .await
                .unwrap()
                .get(0);
            let mut mac = Hmac::<Sha256>::new_from_slice(&f.key).unwrap();
            mac.update(msg.as_bytes());
            let rust: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(sql, rust, "HMAC of {msg:?}");
        }
        // The token is `<that HMAC of "<expiry>.<org>">.<expiry>.<org>`.
        let t = sign_tenant(&f.key, "org.a", 1_800_000_000);
        let mut mac = Hmac::<Sha256>::new_from_slice(&f.key).unwrap();
        mac.update(b"1800000000.org.a");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(t, format!("{hex}.1800000000.org.a"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_role_sees_only_its_org_and_nothing_without_a_valid_context() {
    bounded(180, async {
        let f = Fixture::new("boundary_rls").await;
        // No context at all: the setting does not exist in this session.
        assert_eq!(f.current_org().await, None);
        for t in RLS_TABLES {
            assert_eq!(f.seen(t, "org_a").await, (0, 0), "{t} without context");
        }

        f.set(&f.token("org_a").await).await;
        assert_eq!(f.current_org().await.as_deref(), Some("org_a"));
        for t in RLS_TABLES {
            let want = f.owner_count(t, "org_a").await;
            assert!(want > 0, "the seed has org_a rows in {t}");
            assert_eq!(f.seen(t, "org_a").await, (want, 0), "{t} as org_a");
        }
        f.set(&f.token("org_b").await).await;
        for t in RLS_TABLES {
            let want = f.owner_count(t, "org_b").await;
            assert_eq!(f.seen(t, "org_b").await, (want, 0), "{t} as org_b");
        }

        // Contexts that must give nothing: forged, re-targeted, expired, malformed.
        let good = f.token("org_a").await;
        let (mac, rest) = good.split_at(64);
        let flipped = format!(
            "{}{}{rest}",
            &mac[..63],
            if mac.ends_with('0') { '1' } else { '0' }
        );
        let signed = |rest: &str| {
            let mut m = Hmac::<Sha256>::new_from_slice(&f.key).unwrap();
            m.update(rest.as_bytes());
            let hex: String = m
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{hex}.{rest}")
        };
        let bad = [
            ("forged mac", flipped),
            ("org A's token, org changed to B", good.replace(".org_a", ".org_b")),
            ("org A's token, org extended", format!("{good}x")),
            ("expired", sign_tenant(&f.key, "org_a", f.now - 1)),
            ("empty", String::new()),
            ("x", "x".into()),
            ("64 hex, no rest", mac.to_string()),
            ("64 hex and a dot", format!("{mac}.")),
            ("uppercase mac", format!("{}{rest}", mac.to_uppercase())),
            ("signed, non-digit expiry", signed(&format!("{}x.org_a", f.now + 600))),
            ("signed, 13-digit expiry", signed("1234567890123.org_a")),
            ("signed, no expiry", signed(".org_a")),
            ("signed, empty org", sign_tenant(&f.key, "", f.now + 600)),
            ("another key", sign_tenant(&[7u8; 32], "org_a", f.now + 600)),
            ("huge", "9".repeat(2_000_000)),
        ];
        for (what, token) in &bad {
            f.set(token).await;
            assert_eq!(f.current_org().await, None, "{what}");
            assert_eq!(f.seen("items", "org_a").await, (0, 0), "{what}");
            let e = expect_db_error(
                f.tenant
                    .execute(
                        "INSERT INTO feature_flags (id, org_id, key) VALUES ('f_new', 'org_a', 'n')",
                        &[],
                    )
                    .await,
                "42501",
                what,
            );
            assert!(e.contains("row-level security"), "{what}: {e}");
        }
        // RESET leaves the (now known) setting empty: still nothing.
        f.tenant.batch_execute("RESET orgwall.tenant").await.unwrap();
        assert_eq!(f.current_org().await, None);
        assert_eq!(f.seen("users", "org_a").await, (0, 0));

        // With A's context: A's writes go through (the balance trigger included), B's rows
        // stay out of reach, and no write can move a row to B.
        f.set(&good).await;
        let t = &f.tenant;
        t.execute(
            "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta)
             VALUES ('org_a', 'i_a1', 'l_a1', 2)",
            &[],
        )
        .await
        .unwrap();
        let q: String = t
            .query_one(
                "SELECT quantity::text FROM inventory_balances WHERE item_id = 'i_a1' AND lot_id IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(q, "12");
        let moved = t
            .execute("UPDATE items SET org_id = 'org_b' WHERE id = 'i_a9'", &[])
            .await;
        expect_db_error(moved, "42501", "moving a row to B");
        let insert_b = t
            .execute(
                "INSERT INTO audit_logs (org_id, action) VALUES ('org_b', 'x')",
                &[],
            )
            .await;
        expect_db_error(insert_b, "42501", "inserting a row of B");
        for sql in [
            "UPDATE items SET description = 'pwned' WHERE id = 'i_b1'",
            "DELETE FROM audit_logs WHERE org_id = 'org_b'",
            "UPDATE inventory_balances SET quantity = 0 WHERE org_id = 'org_b'",
        ] {
            assert_eq!(t.execute(sql, &[]).await.unwrap(), 0, "{sql}");
        }
        assert_eq!(
            f.db.psql("SELECT description IS NULL FROM items WHERE id = 'i_b1'")
                .await,
            "t"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_role_has_least_privilege() {
    bounded(120, async {
        let f = Fixture::new("boundary_priv").await;
        f.set(&f.token("org_a").await).await;
        for (sql, why) in [
            ("SELECT * FROM orgwall.tenant_key", "the key"),
            ("SELECT * FROM orgwall.schema_migrations", "the migration history"),
            ("CREATE TABLE public.evil (x int)", "DDL in public"),
            ("CREATE TABLE evil (x int)", "DDL on the search_path"),
            ("CREATE SCHEMA evil", "a new schema"),
            ("SELECT pg_read_file('/etc/passwd')", "reading files"),
            ("COPY items TO PROGRAM 'true'", "running programs"),
            ("INSERT INTO organizations (id, name) VALUES ('org_c', 'C')", "adding an organization"),
            ("DELETE FROM organizations", "deleting organizations"),
            ("TRUNCATE items", "TRUNCATE"),
            ("ALTER TABLE items DISABLE ROW LEVEL SECURITY", "turning RLS off"),
            ("DROP POLICY orgwall_tenant_isolation ON items", "dropping the policy"),
            ("SET ROLE postgres", "becoming the owner"),
            ("CREATE OR REPLACE FUNCTION orgwall.current_org() RETURNS text LANGUAGE sql AS 'SELECT ''org_b'''", "replacing current_org()"),
            ("ALTER ROLE orgwall_tenant BYPASSRLS", "granting itself BYPASSRLS"),
        ] {
            expect_db_error(f.tenant.batch_execute(sql).await, "42501", why);
        }
        // What it may do: read and rename its own organization, and only that one.
        let org: String = f
            .tenant
            .query_one("SELECT id FROM organizations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(org, "org_a");
        let renamed = f
            .tenant
            .execute("UPDATE organizations SET name = 'A 2'", &[])
            .await
            .unwrap();
        assert_eq!(renamed, 1);
        let moved = f
            .tenant
            .execute("UPDATE organizations SET id = 'org_z' WHERE id = 'org_a'", &[])
            .await;
        expect_db_error(moved, "42501", "changing its organization's id");
        assert_eq!(
            f.db.psql("SELECT string_agg(name, ',' ORDER BY id) FROM organizations")
                .await,
            "A 2,B,Default Organization"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_never_cross_tenants() {
    bounded(120, async {
        let f = Fixture::new("boundary_fk").await;
        f.set(&f.token("org_a").await).await;
        let t = &f.tenant;
        // As A, rows pointing at B's rows are refused (23503), whatever the column.
        for sql in [
            "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta) VALUES ('org_a', 'i_b1', 'l_a1', 1)",
            "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta) VALUES ('org_a', 'i_a1', 'l_b1', 1)",
            "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta, user_id) VALUES ('org_a', 'i_a1', 'l_a1', 1, 'u_b1')",
            "INSERT INTO count_sheets (org_id, count_number, location_id) VALUES ('org_a', 'C-9', 'l_b1')",
            "INSERT INTO count_sheets (org_id, count_number, created_by) VALUES ('org_a', 'C-9', 'u_b1')",
            "INSERT INTO count_lines (org_id, count_sheet_id, item_id) VALUES ('org_a', 'c_b1', 'i_a1')",
            "INSERT INTO count_lines (org_id, count_sheet_id, item_id) VALUES ('org_a', 'c_a1', 'i_b1')",
            "INSERT INTO count_lines (org_id, count_sheet_id, item_id, counted_by) VALUES ('org_a', 'c_a1', 'i_a1', 'u_b1')",
            "UPDATE inventory_ledger SET item_id = 'i_b1' WHERE id = 'e_a1'",
        ] {
            let e = expect_db_error(t.execute(sql, &[]).await, "23503", sql);
            assert!(!e.contains("org_b"), "{sql}: {e}");
        }
        // Not even the owner can link two tenants any more (so B's rows never block A's
        // deletes) ...
        let owner_link = f
            .owner
            .execute(
                "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta)
                 VALUES ('org_b', 'i_a8', 'l_b1', 1)",
                &[],
            )
            .await;
        expect_db_error(owner_link, "23503", "the owner linking B's ledger to A's item");
        let owner_balance = f
            .owner
            .execute(
                "INSERT INTO inventory_balances (org_id, item_id, location_id, quantity)
                 VALUES ('org_b', 'i_a8', 'l_b1', 1)",
                &[],
            )
            .await;
        expect_db_error(owner_balance, "23503", "a balance of B on A's item");
        // ... so A deletes its unreferenced items; its own rows still protect the rest.
        assert_eq!(
            t.execute("DELETE FROM items WHERE id IN ('i_a8', 'i_a9')", &[])
                .await
                .unwrap(),
            2
        );
        expect_db_error(
            t.execute("DELETE FROM items WHERE id = 'i_a1'", &[]).await,
            "23503",
            "deleting an item A's ledger uses",
        );
        // NULLs still skip the check (MATCH SIMPLE), ON DELETE CASCADE still cascades.
        t.execute(
            "INSERT INTO count_sheets (id, org_id, count_number) VALUES ('c_a2', 'org_a', 'C-2')",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(
            t.execute("DELETE FROM count_sheets WHERE id = 'c_a1'", &[])
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            f.db.psql("SELECT string_agg(id, ',' ORDER BY id) FROM count_lines")
                .await,
            "cl_b1"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_resumes_after_a_failure() {
    bounded(300, async {
        let db = TestDb::create("boundary_resume").await;
        let t = target(&db);
        migrate::up(&t, plan::resolve("3").unwrap(), &opts())
            .await
            .unwrap();
        db.psql(SEED).await;
        let steps = plan::steps(plan::resolve("4").unwrap().unwrap().up)
            .unwrap()
            .len();
        // Stop after each committed step of 0004 in turn: every later run re-runs the steps
        // already done (idempotent) and gets one further.
        for k in 1..steps {
            let failing = RunOptions {
                fail_after_commits: Some(k),
                ..opts()
            };
            let err = migrate::up(&t, None, &failing).await.unwrap_err();
            assert!(
                matches!(err, MigrateError::InjectedFailure(n) if n == k),
                "{err}"
            );
            let st = migrate::status(&t).await.unwrap();
            assert!(st[3].applied_at.is_none(), "after {k}: {st:?}");
        }
        let report = migrate::up(&t, None, &opts()).await.unwrap();
        assert_eq!(
            report.migrations,
            [
                "0004_tenant_boundary",
                "0005_ledger_replica_identity",
                "0006_tenant_copy",
                "0007_balances_mirror"
            ]
        );
        let checks = verify::verify(&t).await.unwrap();
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        assert_eq!(
            db.psql("SELECT count(*) FROM orgwall.tenant_key").await,
            "1"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_is_shared_by_the_databases_of_a_cluster() {
    bounded(300, async {
        let pg = dedicated_postgres().await;
        let db1 = TestDb::create_on(pg.server.clone(), "boundary_one").await;
        let db2 = TestDb::create_on(pg.server.clone(), "boundary_two").await;
        let (t1, t2) = (target(&db1), target(&db2));
        let roles = || async {
            db1.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'orgwall_tenant'")
                .await
        };
        // A role created by hand, with unsafe attributes, is repaired.
        db1.psql("CREATE ROLE orgwall_tenant NOLOGIN CREATEDB INHERIT")
            .await;
        // Both databases at once: one creates or repairs the role, the other reuses it.
        let o = opts();
        let (a, b) = tokio::join!(migrate::up(&t1, None, &o), migrate::up(&t2, None, &o));
        a.unwrap();
        b.unwrap();
        assert_eq!(roles().await, "1");
        for t in [&t1, &t2] {
            let checks = verify::verify(t).await.unwrap();
            assert!(failed(&checks).is_empty(), "{checks:#?}");
        }
        // `verify` notices a role that gained a dangerous attribute.
        db1.psql("ALTER ROLE orgwall_tenant CREATEDB").await;
        let checks = verify::verify(&t1).await.unwrap();
        db1.psql("ALTER ROLE orgwall_tenant NOCREATEDB").await;
        let bad = failed(&checks);
        assert_eq!(bad.len(), 1, "{checks:#?}");
        assert_eq!(bad[0].name, "tenant role least-privilege");
        assert!(bad[0].detail.contains("CREATEDB"), "{:?}", bad[0]);
        // Keys are per database.
        assert_ne!(
            db1.psql("SELECT encode(key, 'hex') FROM orgwall.tenant_key").await,
            db2.psql("SELECT encode(key, 'hex') FROM orgwall.tenant_key").await
        );

        // No password yet; `up --tenant-password` sets it with nothing pending.
        assert!(tokio_postgres::connect(&tenant_conn_str(&db1), tokio_postgres::NoTls)
            .await
            .is_err());
        let report = migrate::up(&t1, None, &with_password()).await.unwrap();
        assert!(report.migrations.is_empty() && report.tenant_password_set);
        connect(&tenant_conn_str(&db2)).await;
        let stored = db1
            .psql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'orgwall_tenant'")
            .await;
        assert_eq!(stored, "t");

        // Down in one database keeps the role the other still uses ...
        let to_3 = Some(plan::resolve("3").unwrap());
        let report = migrate::down(&t1, to_3, &opts()).await.unwrap();
        assert_eq!(
            report.migrations,
            ["0007_balances_mirror", "0006_tenant_copy", "0005_ledger_replica_identity", "0004_tenant_boundary"]
        );
        assert_eq!(roles().await, "1");
        assert_eq!(
            db1.psql("SELECT count(*) FROM pg_class WHERE relrowsecurity").await,
            "0"
        );
        let checks = verify::verify(&t2).await.unwrap();
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        let checks = verify::verify(&t1).await.unwrap();
        assert_eq!(
            checks
                .iter()
                .filter(|c| c.outcome == Outcome::Skip)
                .count(),
            9,
            "{checks:#?}"
        );
        // ... and the last one drops it.
        migrate::down(&t2, to_3, &opts()).await.unwrap();
        assert_eq!(roles().await, "0");
        migrate::up(&t1, None, &with_password()).await.unwrap();
        assert_eq!(roles().await, "1");
        connect(&tenant_conn_str(&db1)).await;
    })
    .await
}
