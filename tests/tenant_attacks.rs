//! Attack corpus (issue 3): statements a hostile tenant might send. Each one is either refused
//! by Orgwall (an `orgwall:` ErrorResponse with the expected SQLSTATE, the connection still
//! usable) or answers without anything of the other tenant. Afterwards the schema, the roles
//! and every row of tenant B are exactly as before.

use std::fmt::Write as _;

use futures_util::{pin_mut, SinkExt, StreamExt};
use orgwall_e2e::clients::connect;
use orgwall_e2e::tenancy::{
    admin_direct, cluster_fingerprint, mentions_b, mentions_b_row, org_checksums, org_rows,
    run_simple, schema_dump, tenant_db, tenant_proxy, Outcome, TENANT_A, TENANT_B, TENANT_TABLES,
};
use orgwall_e2e::{bounded, ProxyOptions};

/// What an attack must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An Orgwall refusal with one of these SQLSTATEs.
    Refused(&'static [&'static str]),
    /// Rows without B's data, or any error (a refusal is fine too).
    NoLeak,
    /// With the second wall alone, where nothing is refused by Orgwall and statements such as
    /// `database_to_xml` dump all the tenant can see: nothing of any row only B has
    /// ([`mentions_b_row`]).
    RowsOfB,
}

const POLICY: Expect = Expect::Refused(&["42501"]);
/// Policy, or "cannot be confined" / "cannot parse": all acceptable ways to refuse.
const ANY_REFUSAL: Expect = Expect::Refused(&["42501", "0A000", "42601"]);
const NO_LEAK: Expect = Expect::NoLeak;

const ATTACKS: &[(&str, Expect)] = &[
    // DDL and privilege changes
    ("TRUNCATE users", POLICY),
    ("TRUNCATE items CASCADE", POLICY),
    ("DROP TABLE users", POLICY),
    ("DROP SCHEMA public CASCADE", POLICY),
    ("ALTER TABLE users DROP COLUMN org_id", POLICY),
    ("ALTER TABLE users DISABLE TRIGGER ALL", POLICY),
    ("ALTER TABLE inventory_ledger RENAME TO ledger_old", POLICY),
    ("CREATE TABLE evil (x int)", POLICY),
    ("CREATE TEMP TABLE users AS SELECT 1 AS id", POLICY),
    ("CREATE VIEW all_users AS SELECT * FROM users", POLICY),
    ("CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'", POLICY),
    ("CREATE INDEX evil_idx ON users (email)", POLICY),
    ("CREATE RULE r AS ON INSERT TO users DO INSTEAD NOTHING", POLICY),
    ("CREATE ROLE evil SUPERUSER LOGIN", POLICY),
    ("ALTER ROLE postgres PASSWORD 'x'", POLICY),
    ("ALTER SYSTEM SET log_statement = 'none'", POLICY),
    ("ALTER DATABASE postgres SET search_path = evil", POLICY),
    ("GRANT ALL ON users TO PUBLIC", POLICY),
    ("REVOKE SELECT ON users FROM PUBLIC", POLICY),
    ("COMMENT ON TABLE users IS 'owned'", POLICY),
    ("VACUUM FULL users", POLICY),
    ("REINDEX TABLE users", POLICY),
    // system columns would bind to the outer table inside a confined subquery
    ("UPDATE users SET name = 'first' WHERE ctid IN (SELECT ctid FROM users WHERE name IS NULL LIMIT 1)", Expect::Refused(&["0A000"])),
    ("SELECT ctid, xmin, tableoid FROM users", Expect::Refused(&["0A000"])),
    // session identity and settings
    ("SET ROLE postgres", POLICY),
    ("SET role = 'postgres'", POLICY),
    ("SET SESSION AUTHORIZATION postgres", POLICY),
    ("SET search_path = evil, public", POLICY),
    ("SET search_path TO pg_temp, public", POLICY),
    // RESET ALL alone is allowed (asyncpg's pool reset, issue 18): the tenant context it clears
    // on the server connection is set again before the next statement, never skipped.
    ("RESET ALL", NO_LEAK),
    ("RESET ALL; SELECT * FROM users", ANY_REFUSAL),
    ("SHOW ALL", POLICY),
    ("SELECT current_setting('orgwall.tenant')", POLICY),
    ("SELECT name, setting FROM pg_settings WHERE name LIKE 'orgwall%'", NO_LEAK),
    ("SELECT * FROM pg_catalog.pg_prepared_statements", POLICY),
    ("SELECT * FROM pg_prepared_statement()", POLICY),
    ("SELECT pg_stat_get_live_tuples('users'::regclass)", POLICY),
    ("SELECT lastval()", POLICY),
    ("SELECT set_config('search_path', 'evil', false)", POLICY),
    ("SELECT set_config('role', 'postgres', false)", POLICY),
    ("SELECT set_config('orgwall.org_id', 'org_b', false)", POLICY),
    ("SET orgwall.org_id = 'org_b'", POLICY),
    ("SET LOCAL orgwall.org_id = 'org_b'", POLICY),
    ("SET SESSION orgwall.org_id TO 'org_b'", POLICY),
    ("SET orgwall.tenant_token = 'eyJhbGciOiJub25lIn0.eyJvcmdfaWQiOiJvcmdfYiJ9.'", POLICY),
    ("RESET orgwall.org_id", POLICY),
    // procedural code and server-reaching functions
    ("DO $$ BEGIN DELETE FROM users; END $$", POLICY),
    ("DO LANGUAGE plpgsql $$ BEGIN PERFORM 1; END $$", POLICY),
    ("CALL evil()", POLICY),
    ("SELECT query_to_xml('select * from users', true, true, '')", POLICY),
    ("SELECT * FROM query_to_xml('select * from public.users', true, true, '') x", POLICY),
    ("SELECT xpath('/', query_to_xml('select * from users', true, true, ''))", POLICY),
    ("SELECT table_to_xml('users', true, true, '')", POLICY),
    ("SELECT database_to_xml(true, true, '')", POLICY),
    ("SELECT cursor_to_xml('c', 10, true, true, '')", POLICY),
    ("SELECT dblink('dbname=postgres', 'select * from users')", POLICY),
    ("SELECT * FROM dblink('dbname=postgres', 'select id from users') AS t(id text)", POLICY),
    ("SELECT pg_read_file('/etc/passwd')", POLICY),
    ("SELECT pg_ls_dir('.')", POLICY),
    ("SELECT lo_import('/etc/passwd')", POLICY),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", POLICY),
    ("SELECT pg_cancel_backend(1)", POLICY),
    ("SELECT pg_reload_conf()", POLICY),
    ("SELECT current_setting('app.org_id', true), evil_udf()", POLICY),
    // leaky catalogs
    ("SELECT * FROM pg_stats", POLICY),
    ("SELECT most_common_vals::text FROM pg_catalog.pg_stats WHERE tablename = 'users'", POLICY),
    ("SELECT * FROM pg_statistic", POLICY),
    ("SELECT query FROM pg_stat_activity", POLICY),
    ("SELECT * FROM \"pg_catalog\".\"pg_stats\"", POLICY),
    ("SELECT * FROM orgwall.schema_migrations", ANY_REFUSAL),
    // COPY
    ("COPY users TO '/tmp/orgwall-e2e-users.csv'", ANY_REFUSAL),
    ("COPY users FROM '/etc/passwd'", ANY_REFUSAL),
    ("COPY (SELECT * FROM users) TO PROGRAM 'cat'", ANY_REFUSAL),
    // reads that try to widen the tenant filter
    ("SELECT * FROM users WHERE org_id IS NULL OR 1=1", NO_LEAK),
    ("SELECT * FROM users WHERE org_id = 'org_a' OR org_id = 'org_b'", NO_LEAK),
    ("SELECT * FROM users WHERE org_id = ANY('{org_a,org_b}')", NO_LEAK),
    ("SELECT id, email FROM users UNION SELECT id, email FROM users WHERE org_id = 'org_b'", NO_LEAK),
    ("SELECT id, name FROM users UNION ALL SELECT id, description FROM items", NO_LEAK),
    ("WITH users AS (SELECT * FROM public.users) SELECT * FROM users", NO_LEAK),
    ("WITH x AS (SELECT * FROM users WHERE org_id = 'org_b') SELECT * FROM x", NO_LEAK),
    ("WITH RECURSIVE r AS (SELECT id, name FROM users UNION SELECT u.id, u.name FROM users u JOIN r ON true) SELECT * FROM r", NO_LEAK),
    ("SELECT * FROM public.users", NO_LEAK),
    ("SELECT * FROM \"public\".\"users\"", NO_LEAK),
    ("SELECT * FROM PUBLIC.USERS", NO_LEAK),
    ("SELECT * FROM USERS", NO_LEAK),
    ("SELECT * FROM \"Users\"", NO_LEAK),
    ("SELECT * FROM \"USERS\"", NO_LEAK),
    ("SELECT * FROM ONLY users", NO_LEAK),
    ("SELECT * FROM users TABLESAMPLE SYSTEM (100)", NO_LEAK),
    ("SELECT * FROM users FOR UPDATE", NO_LEAK),
    ("SELECT row_to_json(u) FROM users u", NO_LEAK),
    ("SELECT to_jsonb(u.*) FROM public.users AS u", NO_LEAK),
    ("SELECT (SELECT string_agg(email || name, ',') FROM users u2 WHERE u2.org_id = 'org_b')", NO_LEAK),
    ("SELECT * FROM users u JOIN LATERAL (SELECT * FROM users WHERE org_id = 'org_b') b ON true", NO_LEAK),
    ("SELECT * FROM users a FULL JOIN users b ON false", NO_LEAK),
    ("VALUES ((SELECT name FROM users WHERE id = 'u_b1'))", NO_LEAK),
    ("SELECT * FROM (TABLE users) t", NO_LEAK),
    ("TABLE users", NO_LEAK),
    ("SELECT * FROM app.public.users", NO_LEAK),
    ("SELECT * FROM U&\"users\"", NO_LEAK),
    ("SELECT * FROM U&\"\\0075sers\"", NO_LEAK),
    ("SELECT * FROM pg_temp.users", NO_LEAK),
    ("SELECT * FROM information_schema.tables t JOIN users u ON true", NO_LEAK),
    ("SELECT name FROM organizations", NO_LEAK),
    ("SELECT * FROM inventory_balances WHERE org_id <> 'org_a'", NO_LEAK),
    ("EXPLAIN SELECT * FROM users", NO_LEAK),
    ("EXPLAIN ANALYZE DELETE FROM users WHERE org_id = 'org_b'", NO_LEAK),
    ("EXPLAIN (ANALYZE, VERBOSE) UPDATE items SET description = 'x' WHERE org_id = 'org_b'", NO_LEAK),
    ("PREPARE p1 AS SELECT * FROM users WHERE org_id = 'org_b'; EXECUTE p1", NO_LEAK),
    ("BEGIN; DECLARE c CURSOR FOR SELECT * FROM users; FETCH ALL FROM c; COMMIT", NO_LEAK),
    ("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", NO_LEAK),
    // multi-statement strings and comments hiding keywords
    ("SELECT 1; DELETE FROM users", NO_LEAK),
    ("SELECT 1; SELECT * FROM users WHERE org_id = 'org_b'", NO_LEAK),
    ("SELECT 1; TRUNCATE users", POLICY),
    ("SELECT 1; SET ROLE postgres; SELECT * FROM users", POLICY),
    ("SELECT 1;DROP TABLE users", POLICY),
    ("/* SELECT */ DROP TABLE users", POLICY),
    ("SELECT 1 -- ; DROP TABLE users\n; DROP TABLE items", POLICY),
    ("/* /* */ SELECT 1 */ ; DROP TABLE users", ANY_REFUSAL),
    ("/* /* */ DROP TABLE users; */ SELECT * FROM users", NO_LEAK),
    ("SELECT 'a\\'; DROP TABLE users; --'", NO_LEAK),
    ("SELECT E'\\''; DROP TABLE users; --'", ANY_REFUSAL),
    ("SELECT $a$ $$ $a$; DROP TABLE users", POLICY),
    ("SELECT $$; DROP TABLE users; $$", NO_LEAK),
    ("SELECT 1; UPDATE users SET org_id = 'org_b'", ANY_REFUSAL),
    ("UPDATE users SET name = 'x' WHERE org_id = 'org_b' RETURNING *", NO_LEAK),
    ("DELETE FROM users WHERE org_id = 'org_b' RETURNING *", NO_LEAK),
    ("DELETE FROM items WHERE id IN (SELECT id FROM items WHERE org_id = 'org_b')", NO_LEAK),
    ("INSERT INTO users (id, org_id, email) SELECT id || '_x', org_id, email FROM users", ANY_REFUSAL),
    ("INSERT INTO users (id, email) SELECT id || '_y', email FROM users WHERE org_id = 'org_b' RETURNING *", NO_LEAK),
    ("UPDATE users SET org_id = 'org_b'", POLICY),
    ("UPDATE users SET (name, org_id) = ('x', 'org_b')", POLICY),
    ("MERGE INTO users u USING users v ON u.id = v.id WHEN MATCHED THEN UPDATE SET org_id = 'org_b'", ANY_REFUSAL),
];

/// Runs one attack on `c` and judges it; returns a failure description, if any.
async fn judge(c: &tokio_postgres::Client, sql: &str, expect: Expect) -> (String, Option<String>) {
    let outcome = run_simple(c, sql).await;
    let shown = format!("{sql:?} -> {outcome}");
    let fail = match (expect, &outcome) {
        (Expect::Refused(codes), Outcome::Error { code, message }) => {
            if !codes.contains(&code.as_str()) || !message.starts_with("orgwall:") {
                Some(format!(
                    "expected an orgwall refusal {codes:?}, got {outcome}"
                ))
            } else {
                None
            }
        }
        (Expect::Refused(codes), _) => Some(format!(
            "expected an orgwall refusal {codes:?}, but it ran: {outcome}"
        )),
        (Expect::NoLeak, Outcome::Rows(rs)) => rs
            .leaks_b()
            .map(|cell| format!("LEAK of tenant B ({cell}): {outcome}")),
        (Expect::RowsOfB, Outcome::Rows(rs)) => rs
            .rows
            .iter()
            .flatten()
            .find(|c| mentions_b_row(c))
            .map(|cell| format!("LEAK of tenant B's rows ({cell}): {outcome}")),
        (Expect::RowsOfB, Outcome::Error { message, .. }) if mentions_b_row(message) => {
            Some(format!("error message leaks tenant B: {message}"))
        }
        (Expect::RowsOfB, _) => None,
        (Expect::NoLeak, Outcome::Error { message, .. }) if mentions_b(message) => {
            Some(format!("error message leaks tenant B: {message}"))
        }
        (Expect::NoLeak, _) => None,
    };
    (shown, fail)
}

/// Which walls stand (DESIGN.md §4a): every attack runs with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walls {
    Both,
    /// Orgwall's rewrite alone: tenant traffic as the owner login (`enforce_in_postgres = false`).
    FirstOnly,
    /// PostgreSQL's row-level security alone: tenant SQL reaches PostgreSQL as sent.
    SecondOnly,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_corpus_transaction_pooling() {
    attack_corpus("transaction", Walls::Both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_corpus_session_pooling() {
    attack_corpus("session", Walls::Both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_corpus_first_wall_alone() {
    attack_corpus("transaction", Walls::FirstOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_corpus_second_wall_alone() {
    attack_corpus("transaction", Walls::SecondOnly).await;
}

/// Every attack is refused or confined, and nothing of B (nor the schema) changes. With the
/// second wall alone nothing is refused by Orgwall: each attack must fail in PostgreSQL or see
/// and change nothing of B.
async fn attack_corpus(pool_mode: &'static str, walls: Walls) {
    bounded(600, async {
        let db = tenant_db(&format!("tenant_attacks_{pool_mode}_{walls:?}")).await;
        // A tenant UDF the allow-list does not name, for the "user functions" rule.
        db.psql("CREATE FUNCTION public.evil_udf() RETURNS text LANGUAGE sql AS $$ SELECT string_agg(name, ',') FROM public.users $$; \
                 CREATE PROCEDURE public.evil() LANGUAGE sql AS $$ DELETE FROM public.users $$;")
            .await;
        let opts = ProxyOptions {
            first_wall: walls != Walls::SecondOnly,
            second_wall: walls != Walls::FirstOnly,
            ..ProxyOptions::pool(2, pool_mode)
        };
        let proxy = tenant_proxy(&db, opts).await;
        let admin = admin_direct(&db).await;
        let schema_before = schema_dump(&db).await;
        let cluster_before = cluster_fingerprint(&admin).await;
        let b_before = org_checksums(&admin, "org_b", false).await;

        let mut c = connect(&proxy.conn_str(TENANT_A)).await;
        let mut log = String::new();
        let mut failures = Vec::new();
        for (sql, expect) in ATTACKS {
            // Every tenant shares one PostgreSQL role, and PostgreSQL lets a role end its own
            // backends: without the first wall this would end other tests' (and, in a real
            // deployment, other tenants') connections. A denial of service, not a read; the
            // README lists it among what only the first wall stops.
            if walls == Walls::SecondOnly && sql.contains("pg_terminate_backend") {
                continue;
            }
            let expect = if walls == Walls::SecondOnly { Expect::RowsOfB } else { *expect };
            let (shown, fail) = judge(&c, sql, expect).await;
            let _ = writeln!(log, "  {shown}");
            if let Some(f) = fail {
                failures.push(format!("{sql:?}: {f}"));
            }
            // The connection must stay usable, outside any transaction.
            let _ = c.simple_query("ROLLBACK").await;
            match c.simple_query("SELECT 1").await {
                Ok(_) => {}
                Err(e) => {
                    // As the tenant identity, PostgreSQL lets a session end its own backend
                    // (pg_terminate_backend): the client must then connect again.
                    if walls != Walls::SecondOnly {
                        failures.push(format!("{sql:?}: connection unusable afterwards: {e}"));
                    }
                    c = connect(&proxy.conn_str(TENANT_A)).await;
                }
            }
        }

        // COPY FROM STDIN with a row claiming tenant B.
        let copy_in = async {
            let sink = c
                .copy_in("COPY items (id, org_id, item_number) FROM STDIN")
                .await?;
            pin_mut!(sink);
            sink.send(bytes::Bytes::from_static(b"i_x99\torg_b\tW-999\n")).await?;
            sink.finish().await
        }
        .await;
        let _ = writeln!(log, "  COPY items FROM STDIN (an org_b row) -> {copy_in:?}");
        if let Ok(n) = copy_in {
            failures.push(format!("COPY FROM STDIN with an org_b row was accepted ({n} rows)"));
        }
        c = connect(&proxy.conn_str(TENANT_A)).await;
        // COPY TO STDOUT must be confined.
        for sql in ["COPY users TO STDOUT", "COPY (SELECT * FROM users) TO STDOUT", "COPY public.inventory_ledger (id, org_id) TO STDOUT"] {
            let out = async {
                let stream = c.copy_out(sql).await?;
                pin_mut!(stream);
                let mut text = Vec::new();
                while let Some(chunk) = stream.next().await {
                    text.extend_from_slice(&chunk?);
                }
                Ok::<_, tokio_postgres::Error>(String::from_utf8_lossy(&text).into_owned())
            }
            .await;
            let _ = writeln!(log, "  {sql} -> {out:?}");
            if let Ok(text) = &out {
                if text.lines().any(mentions_b) {
                    failures.push(format!("{sql}: LEAK of tenant B: {text}"));
                }
            }
            let _ = c.simple_query("SELECT 1").await;
        }

        let schema_after = schema_dump(&db).await;
        if !diff_lines(&schema_before, &schema_after).is_empty() {
            failures.push(format!(
                "schema changed:\n{}",
                diff_lines(&schema_before, &schema_after)
            ));
        }
        if cluster_fingerprint(&admin).await != cluster_before {
            failures.push("roles or database settings changed".into());
        }
        let b_after = org_checksums(&admin, "org_b", false).await;
        for t in TENANT_TABLES {
            if b_before[t] != b_after[t] {
                failures.push(format!(
                    "tenant B's rows of {t} changed: now {:?}",
                    org_rows(&admin, t, "org_b").await
                ));
            }
        }
        println!("attack corpus ({} statements) as tenant A, {pool_mode} pooling, walls {walls:?}:\n{log}", ATTACKS.len());
        println!("--- FAILURES: {}", failures.len());
        for f in &failures {
            println!("  {f}");
        }
        assert!(failures.is_empty(), "{} attack(s) not contained:\n{}", failures.len(), failures.join("\n"));
    })
    .await;
}

/// Lines that differ; pg_dump's per-run `\restrict` keys are ignored.
fn diff_lines(a: &str, b: &str) -> String {
    let keep = |l: &&str| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict");
    let (la, lb): (Vec<&str>, Vec<&str>) = (
        a.lines().filter(keep).collect(),
        b.lines().filter(keep).collect(),
    );
    let mut out = String::new();
    for l in la.iter().filter(|l| !lb.contains(l)) {
        let _ = writeln!(out, "- {l}");
    }
    for l in lb.iter().filter(|l| !la.contains(l)) {
        let _ = writeln!(out, "+ {l}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_level_prepared_statements_do_not_cross_tenants_transaction() {
    sql_level_prepare("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_level_prepared_statements_do_not_cross_tenants_session() {
    sql_level_prepare("session").await;
}

async fn sql_level_prepare(pool_mode: &'static str) {
    bounded(300, async {
        let db = tenant_db(&format!("tenant_sql_prepare_{pool_mode}")).await;
        // Session pooling with one connection: B waits until A disconnects, then gets A's
        // server connection — where A's SQL-level statement must not survive.
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, pool_mode)).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        // A prepares at SQL level; on the single server connection, B tries to execute it.
        let pa = run_simple(&a, "PREPARE shared_p AS SELECT id FROM users").await;
        let ea = run_simple(&a, "EXECUTE shared_p").await;
        drop(a);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let eb = run_simple(&b, "EXECUTE shared_p").await;
        let text = format!("A PREPARE -> {pa}\nB EXECUTE -> {eb}\nA EXECUTE -> {ea}");
        if let Outcome::Rows(rs) = &eb {
            assert!(
                rs.rows.iter().flatten().all(|c| c.contains("u_b")),
                "B executed A's SQL-level prepared statement and saw A's rows:\n{text}"
            );
        }
        if let Outcome::Rows(rs) = &ea {
            assert!(rs.leaks_b().is_none(), "A's statement leaked B:\n{text}");
        }
        println!("{text}");
    })
    .await;
}
