//! `orgwall migrate` / `reconcile` against a real PostgreSQL: the guide's migration and the
//! tenant boundary (0004) on a populated single-tenant database and back, resuming after
//! injected failures, concurrent runners, the balance trigger under concurrent writers, drift
//! repair, and bad input. (The binary itself is exercised in `proxy/tests/migrate_cli.rs`; what
//! 0004 does for tenants in `tenant_boundary_migration.rs`.)

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use orgwall::migrate::backup::BackupPolicy;
use orgwall::migrate::cli::{self, ChangeArgs, MigrateAction, MigrateArgs, TargetArgs, UpArgs};
use orgwall::migrate::verify::{self, Outcome, TENANT_TABLES};
use orgwall::migrate::{self, plan, reconcile, MigrateError, RunOptions, Target};
use orgwall_e2e::{bounded, connect, TestDb};

fn target(db: &TestDb) -> Target {
    Target::from_url(&db.upstream_url()).unwrap()
}

fn opts(batch_size: i64) -> RunOptions {
    RunOptions {
        batch_size,
        backup: BackupPolicy::Skip,
        ..RunOptions::default()
    }
}

fn to(n: &str) -> Option<&'static migrate::Migration> {
    plan::resolve(n).unwrap()
}

/// A single-tenant application database: every table populated, `ledger` ledger rows.
fn seed_sql(ledger: u32) -> String {
    format!(
        "INSERT INTO users (id, email, name) SELECT 'u' || g, 'user' || g || '@x.test', 'User ' || g FROM generate_series(1, 200) g;
         INSERT INTO items (id, item_number, description) SELECT 'i' || g, 'W-' || g, 'Item ' || g FROM generate_series(1, 1000) g;
         INSERT INTO locations (id, site, name) SELECT 'l' || g, 'Main', 'A-' || g FROM generate_series(1, 50) g;
         INSERT INTO inventory_ledger (id, item_id, location_id, lot_id, quantity_delta, user_id)
           SELECT 'e' || g, 'i' || (g % 1000 + 1), 'l' || (g % 50 + 1),
                  CASE WHEN g % 3 = 0 THEN NULL ELSE 'LOT-' || (g % 7) END, (g % 21) - 10 + 0.5, 'u' || (g % 200 + 1)
           FROM generate_series(1, {ledger}) g;
         INSERT INTO count_sheets (id, count_number, location_id, created_by) SELECT 'c' || g, 'CNT-' || g, 'l' || (g % 50 + 1), 'u1' FROM generate_series(1, 100) g;
         INSERT INTO count_lines (id, count_sheet_id, item_id, counted_quantity) SELECT 'cl' || g, 'c' || (g % 100 + 1), 'i' || (g % 1000 + 1), g % 13 FROM generate_series(1, 2000) g;
         INSERT INTO audit_logs (id, actor, action, payload) SELECT 'a' || g, 'u1', 'login', jsonb_build_object('n', g) FROM generate_series(1, 1000) g;
         INSERT INTO feature_flags (id, key, enabled) SELECT 'f' || g, 'flag' || g, g % 2 = 0 FROM generate_series(1, 10) g;"
    )
}

/// Per table: row count and an md5 over its pre-migration columns (org_id excluded), by id.
async fn checksums(db: &TestDb) -> BTreeMap<String, (i64, String)> {
    let c = connect(&db.direct_conn_str()).await;
    let mut out = BTreeMap::new();
    for t in TENANT_TABLES {
        let sql: String = c
            .query_one(
                "SELECT format('SELECT count(*), md5(coalesce(string_agg(row(%s)::text, '','' ORDER BY id), '''')) FROM %I',
                               string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position), $1::text)
                 FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1::text AND column_name <> 'org_id'",
                &[&t],
            )
            .await
            .unwrap()
            .get(0);
        let r = c.query_one(&sql, &[]).await.unwrap();
        out.insert(t.to_string(), (r.get(0), r.get(1)));
    }
    out
}

/// `pg_dump --schema-only` (schemas public and orgwall, privileges included), without
/// comments, blank lines and the random `\restrict` token of newer pg_dumps.
fn schema_dump(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &db.server.port().to_string(), &db.name])
        .env("PGPASSWORD", orgwall_e2e::pg::SUPERUSER_PASSWORD)
        .output()
        .expect("pg_dump (install postgresql-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn assert_verified(db: &TestDb) {
    assert_verified_skipping(db, 0).await;
}

/// No check fails, and exactly `skipped` are skipped (their migration is not applied).
async fn assert_verified_skipping(db: &TestDb, skipped: usize) {
    let checks = verify::verify(&target(db)).await.unwrap();
    let bad: Vec<_> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    assert!(bad.is_empty(), "verify: {bad:#?}");
    let skips = checks.iter().filter(|c| c.outcome == Outcome::Skip).count();
    assert_eq!(skips, skipped, "verify: {checks:#?}");
}

/// The checks that `verify` skips until 0004, 0005 and 0007 are applied.
const BOUNDARY_CHECKS: usize = 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populated_database_up_verify_down_round_trip() {
    bounded(600, async {
        let db = TestDb::create("mig_round_trip").await;
        let t = target(&db);
        // An empty database needs no backup.
        let strict = RunOptions {
            backup: BackupPolicy::Required,
            ..opts(10_000)
        };
        migrate::up(&t, to("1"), &strict).await.unwrap();
        db.psql(&seed_sql(120_000)).await;
        let (before, schema_before) = (checksums(&db).await, schema_dump(&db));

        let err = migrate::up(&t, None, &strict).await.unwrap_err();
        assert!(matches!(err, MigrateError::BackupRequired { .. }), "{err}");
        assert!(err.to_string().contains("--backup FILE"), "{err}");

        let dump = std::env::temp_dir().join(format!("orgwall-mig-{}.sql", db.name));
        let with_backup = RunOptions {
            backup: BackupPolicy::File(dump.clone()),
            ..opts(10_000)
        };
        let report = migrate::up(&t, to("3"), &with_backup).await.unwrap();
        assert_eq!(
            report.migrations,
            ["0002_add_organization_support", "0003_add_balance_table"]
        );
        let ledger = report
            .backfill
            .iter()
            .find(|b| b.table == "inventory_ledger")
            .unwrap();
        assert_eq!((ledger.rows, ledger.batches), (120_000, 12), "{ledger:?}");
        let dumped = std::fs::read_to_string(&dump).unwrap();
        assert!(
            dumped.contains("COPY public.inventory_ledger"),
            "backup lacks the ledger"
        );
        let _ = std::fs::remove_file(&dump);

        assert_verified_skipping(&db, BOUNDARY_CHECKS).await;
        assert_eq!(checksums(&db).await, before, "data changed by up");
        assert_eq!(
            db.psql("SELECT count(DISTINCT org_id) || ' ' || min(org_id) FROM inventory_ledger")
                .await,
            "1 org_default"
        );
        let schema_3 = schema_dump(&db);

        // 0004 to 0007 up, down, up on the same 120k-row database.
        let report = migrate::up(&t, None, &opts(10_000)).await.unwrap();
        assert_eq!(
            report.migrations,
            [
                "0004_tenant_boundary",
                "0005_ledger_replica_identity",
                "0006_tenant_copy",
                "0007_balances_mirror"
            ]
        );
        assert_verified(&db).await;
        assert_eq!(checksums(&db).await, before, "data changed by 0004");
        let st = migrate::status(&t).await.unwrap();
        assert!(
            st.iter().all(|s| s.applied_at.is_some() && !s.modified),
            "{st:?}"
        );
        // Nothing left to do: no backup demanded, nothing applied.
        assert!(migrate::up(&t, None, &strict)
            .await
            .unwrap()
            .migrations
            .is_empty());
        let report = migrate::down(&t, Some(to("3")), &opts(10_000))
            .await
            .unwrap();
        assert_eq!(
            report.migrations,
            [
                "0007_balances_mirror",
                "0006_tenant_copy",
                "0005_ledger_replica_identity",
                "0004_tenant_boundary"
            ]
        );
        assert_eq!(
            schema_dump(&db),
            schema_3,
            "schema differs after 0005 and 0004 down"
        );
        assert_verified_skipping(&db, BOUNDARY_CHECKS).await;
        migrate::up(&t, None, &opts(10_000)).await.unwrap();
        assert_verified(&db).await;

        let report = migrate::down(&t, Some(to("1")), &opts(10_000))
            .await
            .unwrap();
        assert_eq!(
            report.migrations,
            [
                "0007_balances_mirror",
                "0006_tenant_copy",
                "0005_ledger_replica_identity",
                "0004_tenant_boundary",
                "0003_add_balance_table",
                "0002_add_organization_support"
            ]
        );
        assert_eq!(schema_dump(&db), schema_before, "schema differs after down");
        assert_eq!(checksums(&db).await, before, "data changed by up + down");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_resumes_after_failures_midway() {
    bounded(300, async {
        let db = TestDb::create("mig_resume").await;
        let t = target(&db);
        migrate::up(&t, to("1"), &opts(1000)).await.unwrap();
        db.psql(&seed_sql(20_000)).await;
        let before = checksums(&db).await;
        let failing = |n| RunOptions { fail_after_commits: Some(n), ..opts(1000) };

        // Stopped right after the columns were added: the guide's "column already exists".
        let err = migrate::up(&t, None, &failing(2)).await.unwrap_err();
        assert!(matches!(err, MigrateError::InjectedFailure(2)), "{err}");
        assert_eq!(
            db.psql("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'inventory_ledger' AND column_name = 'org_id'").await,
            "YES"
        );
        let st = migrate::status(&t).await.unwrap();
        assert!(st[1].applied_at.is_none(), "{st:?}");

        // Stopped in the middle of the ledger's backfill.
        migrate::up(&t, None, &failing(12)).await.unwrap_err();
        let left: i64 = db.psql("SELECT count(*) FROM inventory_ledger WHERE org_id IS NULL").await.parse().unwrap();
        assert!(left > 0 && left < 20_000, "{left} ledger rows still NULL");

        let report = migrate::up(&t, None, &opts(1000)).await.unwrap();
        assert_eq!(report.migrations, ["0002_add_organization_support", "0003_add_balance_table", "0004_tenant_boundary", "0005_ledger_replica_identity", "0006_tenant_copy", "0007_balances_mirror"]);
        assert_verified(&db).await;
        assert_eq!(checksums(&db).await, before);

        // Rolling back and re-applying after a failure inside the last step also converges.
        migrate::down(&t, Some(to("1")), &opts(1000)).await.unwrap();
        // Commits of 0002 with 1000-row batches: organizations, columns (2); backfill batches
        // (users 1, items 1, locations 1, ledger 20, count_sheets 1, count_lines 2,
        // audit_logs 1, feature_flags 1 = 28); five constraint steps; then the first
        // concurrent-index step (36) — stop right after it.
        let before_indexes = 2 + 28 + 5 + 1;
        let err = migrate::up(&t, None, &failing(before_indexes)).await.unwrap_err();
        assert!(matches!(err, MigrateError::InjectedFailure(36)), "{err}");
        assert_eq!(db.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_orgid_email_key'").await, "1");
        assert_eq!(db.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_key'").await, "1");
        migrate::up(&t, None, &opts(1000)).await.unwrap();
        assert_verified(&db).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runners_never_double_apply() {
    bounded(300, async {
        let db = TestDb::create("mig_concurrent").await;
        let t = target(&db);
        migrate::up(&t, to("1"), &opts(1000)).await.unwrap();
        db.psql(&seed_sql(20_000)).await;
        let (t1, t2) = (t.clone(), t.clone());
        let a = tokio::spawn(async move { migrate::up(&t1, None, &opts(500)).await });
        let b = tokio::spawn(async move { migrate::up(&t2, None, &opts(500)).await });
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        let mut all: Vec<String> = a.migrations.iter().chain(&b.migrations).cloned().collect();
        all.sort();
        assert_eq!(
            all,
            [
                "0002_add_organization_support",
                "0003_add_balance_table",
                "0004_tenant_boundary",
                "0005_ledger_replica_identity",
                "0006_tenant_copy",
                "0007_balances_mirror"
            ],
            "a: {:?}, b: {:?}",
            a.migrations,
            b.migrations
        );
        assert_eq!(
            db.psql("SELECT count(*) FROM orgwall.schema_migrations")
                .await,
            "7"
        );
        assert_eq!(db.psql("SELECT count(*) FROM organizations").await, "1");
        assert_verified(&db).await;

        // A runner that cannot get the lock in time gives up cleanly.
        let holder = connect(&db.direct_conn_str()).await;
        holder
            .query_one("SELECT pg_advisory_lock($1)", &[&migrate::runner::LOCK_KEY])
            .await
            .unwrap();
        let impatient = RunOptions {
            lock_wait: Duration::from_millis(500),
            ..opts(500)
        };
        let err = migrate::down(&t, None, &impatient).await.unwrap_err();
        assert!(matches!(err, MigrateError::LockTimeout(_)), "{err}");
        drop(holder);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_keeps_balances_under_concurrent_writers_and_reconcile_repairs_drift() {
    bounded(300, async {
        let db = TestDb::create("mig_reconcile").await;
        let t = target(&db);
        migrate::up(&t, None, &opts(1000)).await.unwrap();
        db.psql(
            "INSERT INTO organizations VALUES ('org_b', 'B');
             INSERT INTO items (id, org_id, item_number) SELECT 'i' || g, CASE WHEN g % 2 = 0 THEN 'org_b' ELSE 'org_default' END, 'W-1' || g FROM generate_series(1, 4) g;
             INSERT INTO locations (id, org_id, site, name) SELECT 'l' || g, CASE WHEN g % 2 = 0 THEN 'org_b' ELSE 'org_default' END, 'Main', 'A-0' || g FROM generate_series(1, 4) g;",
        )
        .await;
        // Several writers hit the same keys (NULL and non-NULL lots) at once.
        let mut writers = Vec::new();
        for w in 0..4i32 {
            let conn = db.direct_conn_str();
            writers.push(tokio::spawn(async move {
                let c = connect(&conn).await;
                for i in 0..150i32 {
                    let n = (w * 7 + i) % 4 + 1;
                    let lot = if i % 3 == 0 { None } else { Some(format!("L{}", i % 2)) };
                    c.execute(
                        "INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta)
                         VALUES (CASE WHEN $1::int % 2 = 0 THEN 'org_b' ELSE 'org_default' END, 'i' || $1::int, 'l' || $1::int, $2, ($3::int % 9 - 3)::numeric / 2)",
                        &[&n, &lot, &i],
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let c = connect(&db.direct_conn_str()).await;
        assert!(reconcile::find_drift(&c).await.unwrap().is_empty());
        assert_eq!(db.psql("SELECT count(*) FROM inventory_ledger").await, "600");
        assert_verified(&db).await;

        // 0005: ledger rows re-quantified, moved to another key, edited without a change, and
        // deleted keep the balances exact (the emptied keys keep a zero row).
        db.psql(
            "UPDATE inventory_ledger SET quantity_delta = quantity_delta * 3 + 0.25 WHERE item_id = 'i1' AND lot_id = 'L0';
             UPDATE inventory_ledger SET lot_id = 'MOVED' WHERE item_id = 'i3' AND lot_id IS NULL;
             UPDATE inventory_ledger SET reason = 'no-op' WHERE item_id = 'i2';
             DELETE FROM inventory_ledger WHERE item_id = 'i4' AND lot_id = 'L1';",
        )
        .await;
        assert!(reconcile::find_drift(&c).await.unwrap().is_empty());
        assert_eq!(
            db.psql("SELECT quantity = 0 FROM inventory_balances WHERE item_id = 'i3' AND lot_id IS NULL").await,
            "t"
        );
        assert_verified(&db).await;

        // Three kinds of drift: a wrong quantity, a missing row (NULL lot), a stray row.
        db.psql(
            "UPDATE inventory_balances SET quantity = quantity + 1 WHERE item_id = 'i1' AND lot_id = 'L1';
             DELETE FROM inventory_balances WHERE item_id = 'i2' AND lot_id IS NULL;
             INSERT INTO inventory_balances (org_id, item_id, location_id, lot_id, quantity) VALUES ('org_b', 'i4', 'l4', 'ZZ', 7);",
        )
        .await;
        let drift = reconcile::find_drift(&c).await.unwrap();
        assert_eq!(drift.len(), 3, "{drift:#?}");
        assert!(drift.iter().any(|d| d.item_id == "i2" && d.lot_id.is_none() && d.balance.is_none()));
        let args = |fix| cli::ReconcileArgs { fix, proxy: None, target: TargetArgs { database_url: Some(db.upstream_url()), config: None } };
        let err = cli::reconcile(args(false)).await.unwrap_err();
        assert!(matches!(err, MigrateError::Drift(3)), "{err}");
        let checks = verify::verify(&t).await.unwrap();
        let bal = checks.iter().find(|c| c.name == "balances match the ledger").unwrap();
        assert_eq!(bal.outcome, Outcome::Fail, "{bal:?}");

        cli::reconcile(args(true)).await.unwrap();
        assert!(reconcile::find_drift(&c).await.unwrap().is_empty());
        cli::reconcile(args(false)).await.unwrap();
        assert_eq!(
            db.psql("SELECT quantity FROM inventory_balances WHERE org_id = 'org_b' AND item_id = 'i4' AND lot_id = 'ZZ'").await,
            "0"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    bounded(120, async {
        let db = TestDb::create("mig_bad_input").await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let unreachable =
            Target::from_url(&format!("postgres://postgres:pw@127.0.0.1:{port}/app")).unwrap();
        let err = migrate::status(&unreachable).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("cannot connect to postgres@127.0.0.1:{port}/app")),
            "{err}"
        );
        assert!(err.to_lowercase().contains("refused"), "{err}");
        assert!(!err.contains(":pw@"), "password leaked: {err}");

        let wrong = db
            .upstream_url()
            .replace(orgwall_e2e::pg::SUPERUSER_PASSWORD, "wrong-pw");
        let err = migrate::status(&Target::from_url(&wrong).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("password authentication failed"), "{err}");

        let err = Target::from_url("postgres://u:secret@host:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid database URL") && !err.contains("secret"),
            "{err}"
        );
        let none = TargetArgs {
            database_url: None,
            config: None,
        };
        assert!(matches!(none.resolve(), Err(MigrateError::NoTarget)));

        let change = |to: &str| ChangeArgs {
            to: Some(to.into()),
            backup: None,
            no_backup: true,
            batch_size: 100,
            lock_wait_secs: 1,
            fail_after_commits: None,
        };
        let args = |action| MigrateArgs {
            action,
            target: TargetArgs {
                database_url: Some(db.upstream_url()),
                config: None,
            },
        };
        let up = |to: &str| UpArgs {
            change: change(to),
            tenant_password: None,
        };
        for action in [
            MigrateAction::Up(up("8")),
            MigrateAction::Down(change("0009")),
        ] {
            let err = cli::migrate(args(action)).await.unwrap_err().to_string();
            assert!(
                err.contains("unknown migration") && err.contains("0002_add_organization_support"),
                "{err}"
            );
        }
        // Nothing was touched by the refused commands.
        assert_eq!(
            db.psql("SELECT to_regclass('orgwall.schema_migrations') IS NULL")
                .await,
            "t"
        );
        // --tenant-password with a target that leaves 0004 out is refused before any migration.
        let err = cli::migrate(args(MigrateAction::Up(UpArgs {
            tenant_password: Some("zq-secret-77".parse().unwrap()),
            ..up("3")
        })))
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--tenant-password needs migration 0004_tenant_boundary"),
            "{err}"
        );
        assert!(!err.contains("zq-secret"), "{err}");
        assert_eq!(
            db.psql("SELECT count(*) FROM orgwall.schema_migrations")
                .await,
            "0"
        );
        // verify on an empty database fails (tables missing) rather than erroring out.
        let err = cli::migrate(args(MigrateAction::Verify)).await.unwrap_err();
        assert!(matches!(err, MigrateError::VerifyFailed(1)), "{err}");
    })
    .await
}

/// 0007 down takes `inventory_balances` out of the publications naming it before dropping
/// its replica identity (published without one, every ledger insert would fail in the
/// balance trigger's upsert), and refuses when a publication covers every table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_migration_down_leaves_publications_first() {
    bounded(300, async {
        let db = TestDb::create("mig_mirror_down").await;
        let t = target(&db);
        migrate::up(&t, to("1"), &opts(1000)).await.unwrap();
        db.psql(&seed_sql(100)).await;
        migrate::up(&t, None, &opts(1000)).await.unwrap();
        let identity = "SELECT relreplident FROM pg_class WHERE oid = 'inventory_balances'::regclass";
        assert_eq!(db.psql(identity).await, "f");
        db.psql("CREATE PUBLICATION mirror_pub FOR TABLE inventory_balances, inventory_ledger")
            .await;
        let report = migrate::down(&t, Some(to("6")), &opts(1000)).await.unwrap();
        assert_eq!(report.migrations, ["0007_balances_mirror"]);
        assert_eq!(db.psql(identity).await, "d");
        assert_eq!(
            db.psql("SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'mirror_pub'")
                .await,
            "inventory_ledger"
        );
        // The balance trigger's upsert still works.
        db.psql(
            "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta, reason) \
             SELECT org_id, item_id, location_id, 1, 'after down' FROM inventory_ledger LIMIT 1",
        )
        .await;
        migrate::up(&t, None, &opts(1000)).await.unwrap();
        db.psql("CREATE PUBLICATION everything FOR ALL TABLES").await;
        let err = migrate::down(&t, Some(to("5")), &opts(1000)).await.unwrap_err();
        assert!(err.to_string().contains("FOR ALL TABLES"), "{err}");
        assert_eq!(db.psql(identity).await, "f", "refused: nothing changed");
    })
    .await
}
