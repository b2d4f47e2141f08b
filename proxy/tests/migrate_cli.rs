//! The `orgwall migrate` / `orgwall reconcile` binary against a private PostgreSQL: exit codes,
//! printed tables, the backup guard, an injected failure and resume, `--config`, and the error
//! messages for bad input. (Library-level scenarios live in `tests/migrate.rs`.)

use std::path::PathBuf;
use std::process::{Command, Output};

use orgwall::localpg::{LocalPgOptions, LocalPostgres};

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn orgwall(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orgwall"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("ORGWALL_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run orgwall")
}

fn text(o: &Output) -> (String, String) {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(!err.contains("panicked"), "orgwall panicked: {err}");
    (out, err)
}

fn ok(url: &str, args: &[&str]) -> String {
    let o = orgwall(url, args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "orgwall {args:?} failed:\n{out}\n{err}");
    out
}

/// Runs a command that must fail; returns stdout + stderr.
fn fails(url: &str, args: &[&str]) -> String {
    let o = orgwall(url, args);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "orgwall {args:?} succeeded:\n{out}");
    format!("{out}{err}")
}

#[test]
fn migrate_and_reconcile_commands() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = Scratch(PathBuf::from(format!(
        "/tmp/orgwall-migrate-cli-{}-{nanos}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let pg = LocalPostgres::start(LocalPgOptions {
        data_dir: dir.0.join("pgdata"),
        port: None,
        superuser_password: "cli-pw".into(),
        extra_conf: vec![],
    })
    .expect("start PostgreSQL (apt-get install -y postgresql)");
    pg.create_database("app").unwrap();
    let url = pg.url("app");
    let sql = |s: &str| pg.psql("app", s).unwrap();

    let out = ok(&url, &["migrate", "status"]);
    assert_eq!(out.matches("pending").count(), 7, "{out}");
    ok(&url, &["migrate", "up", "--to", "1"]);
    sql("INSERT INTO items (id, item_number) VALUES ('i1', 'W-100');
         INSERT INTO locations (id, site, name) VALUES ('l1', 'Main', 'A-01');
         INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta)
           SELECT 'i1', 'l1', CASE WHEN g % 2 = 0 THEN NULL ELSE 'L7' END, g FROM generate_series(1, 50) g;");

    // The backup guard, then a failure part-way, then the completing run with a backup.
    let out = fails(&url, &["migrate", "up"]);
    assert!(
        out.contains("--backup FILE") && out.contains("--no-backup"),
        "{out}"
    );
    let out = fails(
        &url,
        &["migrate", "up", "--no-backup", "--fail-after-commits", "4"],
    );
    assert!(out.contains("injected failure"), "{out}");
    let status = ok(&url, &["migrate", "status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("0002_") && l.contains("pending")),
        "{status}"
    );
    let dump = dir.0.join("backup.sql");
    let dump_s = dump.to_str().unwrap();
    let out = ok(
        &url,
        &["migrate", "up", "--backup", dump_s, "--batch-size", "7"],
    );
    assert!(
        out.contains(
            "applied: 0002_add_organization_support, 0003_add_balance_table, 0004_tenant_boundary, 0005_ledger_replica_identity, 0006_tenant_copy, 0007_balances_mirror"
        ),
        "{out}"
    );
    assert!(out.contains("backfill inventory_ledger"), "{out}");
    assert!(std::fs::metadata(&dump).unwrap().len() > 0);

    let out = ok(&url, &["migrate", "verify"]);
    assert!(out.contains("pass") && !out.contains("FAIL"), "{out}");
    assert!(ok(&url, &["reconcile"]).contains("matches the ledger"));

    // Drift: reconcile exits non-zero naming the key; --fix repairs it.
    sql("UPDATE inventory_balances SET quantity = quantity + 5 WHERE lot_id IS NULL");
    let out = fails(&url, &["reconcile"]);
    assert!(
        out.contains("i1") && out.contains("(none)") && out.contains("drifts"),
        "{out}"
    );
    let out = fails(&url, &["migrate", "verify"]);
    assert!(
        out.contains("FAIL") && out.contains("verification failed"),
        "{out}"
    );
    assert!(ok(&url, &["reconcile", "--fix"]).contains("repaired 1 key"));
    ok(&url, &["reconcile"]);

    // The config file's upstream is used when no URL is given.
    let cfg = dir.0.join("orgwall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[upstream]\nurl = \"{url}\"\n\n[[users]]\nname = \"a\"\npassword = \"p\"\norg_id = \"o\"\n"
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_orgwall"))
        .args(["migrate", "status", "--config", cfg.to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.matches("applied").count() == 7,
        "{out}{err}"
    );

    // Bad input: clear messages, non-zero exits, no panics.
    let out = fails(&url, &["migrate", "up", "--to", "9", "--no-backup"]);
    assert!(out.contains("unknown migration `9`"), "{out}");
    let wrong = url.replace("cli-pw", "nope");
    let out = fails(&wrong, &["migrate", "status"]);
    assert!(out.contains("password authentication failed"), "{out}");
    let port = orgwall::localpg::free_port().unwrap();
    let out = fails(
        &format!("postgres://postgres:x@127.0.0.1:{port}/app"),
        &["migrate", "status"],
    );
    assert!(
        out.contains("cannot connect to postgres@127.0.0.1"),
        "{out}"
    );

    // All the way down.
    let out = ok(&url, &["migrate", "down", "--to", "0", "--no-backup"]);
    assert!(
        out.contains(
            "rolled back: 0007_balances_mirror, 0006_tenant_copy, 0005_ledger_replica_identity, 0004_tenant_boundary, 0003_add_balance_table, 0002_add_organization_support, 0001_base_schema"
        ),
        "{out}"
    );
    assert_eq!(
        ok(&url, &["migrate", "status"]).matches("pending").count(),
        7
    );
    drop(pg);
}
