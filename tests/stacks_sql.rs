//! Issue 18: the SQL that Rails, pgjdbc, asyncpg's pool, psql, knex, Hibernate and job queues
//! send, which Orgwall used to refuse for tenants. Each statement runs as tenant A through
//! Orgwall and directly as a role that forced row-level security confines to A (on a second
//! copy of the data, the reference of `tenant_isolation`); the outcomes must be equal, B's rows
//! byte-identical afterwards. What cannot be confined is refused with a message saying what to
//! do instead; the hostile uses of what was opened up stay closed.

use orgwall_e2e::clients::{connect, psql};
use orgwall_e2e::tenancy::{
    admin_direct, org_checksums, protect_sql, run_extended, run_simple, setup_rls, tenant_db,
    tenant_proxy, Outcome, SWITCHER, TENANT_A, TENANT_B,
};
use orgwall_e2e::{bounded, ProxyOptions, TestDb};
use tokio_postgres::Client;

/// A tenant table with a sequence (Hibernate draws ids with `nextval`) and a table without
/// `org_id` that is not declared global (knex's lock table).
const EXTRA_SCHEMA: &str = "\
    CREATE TABLE public.tickets (id bigserial PRIMARY KEY, org_id text NOT NULL \
      REFERENCES organizations (id), title text NOT NULL);\n\
    INSERT INTO public.tickets (org_id, title) VALUES ('org_b', 'SECRET ticket');\n\
    CREATE TABLE public.knex_migrations_lock (index serial PRIMARY KEY, is_locked int);\n";

/// Orgwall's copy: the second wall on the new table, and its sequence for the tenant identity.
fn orgwall_schema() -> String {
    format!(
        "{EXTRA_SCHEMA}{}GRANT USAGE, SELECT ON SEQUENCE public.tickets_id_seq TO orgwall_tenant;\n",
        protect_sql("tickets", "org_id")
    )
}

/// The reference copy: the RLS role's policy on the new table and its sequence.
fn reference_schema(role: &str) -> String {
    format!(
        "ALTER TABLE public.tickets ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE public.tickets FORCE ROW LEVEL SECURITY;\n\
         CREATE POLICY tenant_only ON public.tickets TO {role} \
           USING (org_id = current_setting('app.org_id')) \
           WITH CHECK (org_id = current_setting('app.org_id'));\n\
         ALTER TABLE public.tickets ALTER COLUMN org_id SET DEFAULT current_setting('app.org_id');\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.tickets, public.knex_migrations_lock TO {role};\n\
         GRANT USAGE, SELECT ON SEQUENCE public.tickets_id_seq TO {role};\n"
    )
}

/// Statements whose outcome through Orgwall must equal row-level security's. `simple`: sent as
/// a simple Query (several statements, or settings), else as an unnamed extended statement.
const SAME: &[(&str, &str, bool)] = &[
    ("rails_scs", "SET standard_conforming_strings = on", true),
    ("rails_current_schemas", "SELECT current_schemas(false)", false),
    ("rails_search_path", "SET search_path TO public", true),
    ("pgjdbc_type_lookup", "SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid IN (3802, 1186, 869) ORDER BY t.oid", false),
    ("pgjdbc_primary_keys", "SELECT a.attname, (i.keys).n FROM pg_catalog.pg_attribute a JOIN (SELECT ci.indrelid, information_schema._pg_expandarray(ci.indkey) AS keys FROM pg_catalog.pg_index ci JOIN pg_catalog.pg_class c ON c.oid = ci.indrelid WHERE c.relname = 'items' AND ci.indisprimary) i ON a.attrelid = i.indrelid AND a.attnum = (i.keys).x ORDER BY 2", false),
    ("pgjdbc_max_index_keys", "SELECT setting FROM pg_catalog.pg_settings WHERE name='max_index_keys'", false),
    ("no_key_update", "SELECT id FROM items WHERE active ORDER BY id FOR NO KEY UPDATE", false),
    ("key_share_skip_locked", "SELECT id FROM users ORDER BY id FOR KEY SHARE SKIP LOCKED", false),
    ("select_only", "SELECT FROM ONLY items", false),
    ("count_only", "SELECT count(*) FROM ONLY items i", false),
    ("fts", "SELECT id, ts_rank(to_tsvector('english', coalesce(description, '')), plainto_tsquery('english', 'anvils')) FROM items WHERE to_tsvector('english', coalesce(description, '')) @@ websearch_to_tsquery('english', 'anvil or skates')", false),
    ("advisory_xact", "SELECT pg_try_advisory_xact_lock(42), pg_advisory_xact_lock(7), pg_try_advisory_xact_lock_shared(1, 2)", false),
    ("xact_ids", "SELECT txid_current() > 0, pg_current_xact_id()::text::bigint > 0", false),
    ("hashes", "SELECT sha256(convert_to(item_number, 'UTF8')), hashtext(id), array_to_json(ARRAY[id, item_number]), convert_from('\\x616263'::bytea, 'UTF8') FROM items", false),
    ("nextval_currval", "SELECT nextval('tickets_id_seq'); SELECT currval('public.tickets_id_seq')", true),
    ("insert_serial_returning", "INSERT INTO tickets (title) VALUES ('mine') RETURNING id, org_id, title", false),
    ("tickets", "SELECT id, org_id, title FROM tickets", false),
    ("table_tickets", "TABLE tickets", false),
    ("table_tickets_simple", "TABLE tickets", true),
    ("insert_select_on_conflict", "INSERT INTO feature_flags (id, key) SELECT 'ff_a_new', 'k_new' ON CONFLICT DO NOTHING", false),
    ("insert_select_on_conflict_again", "INSERT INTO feature_flags (id, key) SELECT 'ff_a_new', 'k_new' ON CONFLICT DO NOTHING", true),
    ("insert_select_own_key_on_conflict", "INSERT INTO users (id, email) SELECT 'u_a9', 'alice@shared.test' ON CONFLICT DO NOTHING", false),
    ("asyncpg_reset", "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;", true),
    ("after_reset", "SELECT id, email FROM users", false),
    ("unlisten_channel", "UNLISTEN jobs", true),
];

/// Refused through Orgwall (RLS would answer), with the SQLSTATE and what the message says.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "SELECT * FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY['a']))",
        "0A000",
        "unnest(a, b)",
    ),
    (
        "SELECT * FROM knex_migrations_lock",
        "42501",
        "add \"public.knex_migrations_lock\" to [tenancy] global_tables",
    ),
    (
        "RESET ALL; SELECT 1",
        "0A000",
        "RESET ALL must be the last statement",
    ),
];

/// The hostile side of what was opened: each must be refused (SQLSTATE, message part).
const HOSTILE: &[(&str, &str, &str)] = &[
    (
        "SELECT current_setting('orgwall.tenant')",
        "42501",
        "belongs to Orgwall",
    ),
    (
        "SELECT current_setting(name) FROM pg_settings WHERE name = 'orgwall.tenant'",
        "42501",
        "literal name only",
    ),
    ("SHOW orgwall.tenant", "42501", "orgwall.org_id"),
    (
        "SHOW \"orgwall.tenant\"",
        "42501",
        "not a setting tenants can read",
    ),
    ("SHOW ALL", "42501", "SHOW ALL is not available"),
    (
        "SET search_path TO pg_catalog, public",
        "42501",
        "search_path",
    ),
    (
        "SELECT nextval('knex_migrations_lock_index_seq')",
        "42501",
        "sequence owned by a column of a tenant table",
    ),
    ("SELECT setval('tickets_id_seq', 1)", "42501", "setval"),
    ("SELECT lastval()", "42501", "lastval"),
    ("SELECT pg_advisory_lock(1)", "42501", "pg_advisory_lock"),
    ("SELECT * FROM pg_advisory_xact_lock(1)", "0A000", "in FROM"),
    (
        "SELECT ts_stat('SELECT description::tsvector FROM items')",
        "42501",
        "ts_stat",
    ),
    ("LISTEN jobs", "42501", "LISTEN"),
];

async fn outcome(c: &Client, sql: &str, simple: bool) -> Outcome {
    if simple {
        run_simple(c, sql).await
    } else {
        run_extended(c, sql, &[]).await
    }
}

/// A direct connection as the RLS role, A's org set as a startup option (so that `RESET ALL`
/// returns to it, as it returns to Orgwall's tenant).
async fn rls_client(db: &TestDb, role: &str) -> Client {
    connect(&format!(
        "host=127.0.0.1 port={} user={role} password=rls-pw dbname={} options='-c app.org_id=org_a'",
        db.server.port(),
        db.name
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_sql_matches_row_level_security_or_says_why_not() {
    bounded(300, async {
        let reference = tenant_db("stacks_rls").await;
        reference.psql(EXTRA_SCHEMA).await;
        let role = setup_rls(&reference).await;
        reference.psql(&reference_schema(&role)).await;
        let db = tenant_db("stacks").await;
        db.psql(&orgwall_schema()).await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        let admin = admin_direct(&db).await;
        let b_before = org_checksums(&admin, "org_b", false).await;

        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let rls = rls_client(&reference, &role).await;
        let mut report = Vec::new();
        for (name, sql, simple) in SAME {
            let (p, d) = (
                outcome(&a, sql, *simple).await,
                outcome(&rls, sql, *simple).await,
            );
            if p != d || matches!(p, Outcome::Error { .. }) {
                report.push(format!("{name}: {sql}\n    Orgwall: {p}\n    RLS:     {d}"));
            }
        }
        for (sql, code, part) in REFUSED.iter().chain(HOSTILE) {
            match run_simple(&a, sql).await {
                Outcome::Error { code: c, message } if c == *code && message.contains(part) => {}
                other => report.push(format!("{sql}: want {code} …{part}…, got {other}")),
            }
        }
        assert!(report.is_empty(), "differences:\n{}", report.join("\n"));

        // Filtered catalogs: only the built-in settings, only the role the tenant runs as.
        let one = |o: Outcome| match o {
            Outcome::Rows(r) => r.rows,
            other => panic!("{other}"),
        };
        assert_eq!(
            one(run_simple(&a, "SELECT count(*) FROM pg_settings WHERE name LIKE '%.%'").await),
            vec![vec!["'0'".to_string()]]
        );
        assert_eq!(
            one(run_simple(
                &a,
                "SELECT rolname = current_user, count(*) OVER () FROM pg_catalog.pg_roles"
            )
            .await),
            vec![vec!["'t'".to_string(), "'1'".to_string()]]
        );
        assert_eq!(
            one(run_simple(
                &a,
                "SELECT count(*) FROM pg_user WHERE usename <> current_user"
            )
            .await),
            vec![vec!["'0'".to_string()]]
        );
        // The tenant's own conditions never run on the rows the filters leave out (an error
        // message would show them).
        for sql in [
            "SELECT 1 FROM pg_settings WHERE (name || '=' || setting)::int = 1",
            "SELECT 1 FROM pg_catalog.pg_roles r WHERE ('x' || r.rolname)::int = 1",
            "SELECT 1 FROM pg_user WHERE ('x' || usename)::int = 1",
        ] {
            match run_simple(&a, sql).await {
                Outcome::Error { message, .. }
                    if !message.contains("orgwall.")
                        && !message.contains("xpostgres")
                        && !message.contains("xrls_") => {}
                other => panic!("{sql}: {other}"),
            }
        }
        // COPY … FROM STDIN: PostgreSQL refuses it under row-level security (0A000); Orgwall
        // stages the stream and inserts it as the tenant (tests/copy_in.rs compares the rows
        // with the same INSERTs under RLS).
        let refused = rls
            .copy_in::<_, bytes::Bytes>("COPY feature_flags (id, key) FROM STDIN")
            .await
            .map(|_| ())
            .map_err(|e| e.as_db_error().map(|d| d.code().code().to_string()));
        assert!(
            matches!(&refused, Err(Some(code)) if code == "0A000"),
            "RLS: COPY FROM STDIN gave {refused:?}"
        );
        let sink = a
            .copy_in::<_, bytes::Bytes>("COPY feature_flags (id, key) FROM STDIN")
            .await
            .expect("COPY FROM STDIN through Orgwall");
        futures_util::pin_mut!(sink);
        futures_util::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"ff_a_copy\tk_copy\n"))
            .await
            .expect("COPY data");
        assert_eq!(sink.finish().await.expect("COPY through Orgwall"), 1);
        // A statement pipelined behind RESET ALL runs with the tenant context set again.
        let (reset, rows) = tokio::join!(
            a.simple_query("RESET ALL"),
            a.query_typed("SELECT id FROM items ORDER BY id", &[])
        );
        reset.expect("RESET ALL");
        let ids: Vec<String> = rows
            .expect("the read behind RESET ALL")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids, ["i_a1", "i_a2", "i_a3"]);
        // SHOW orgwall.org_id in both protocols.
        assert_eq!(
            one(run_simple(&a, "SHOW orgwall.org_id").await),
            vec![vec!["'org_a'".to_string()]]
        );
        let row = a
            .query_one("SHOW orgwall.org_id", &[])
            .await
            .expect("SHOW, extended");
        assert_eq!(row.get::<_, String>(0), "org_a");
        assert_eq!(row.columns()[0].name(), "orgwall.org_id");
        // A switcher sees the tenant it bound, and nothing before binding one.
        let svc = connect(&proxy.conn_str(SWITCHER)).await;
        assert_eq!(
            one(run_simple(&svc, "SHOW orgwall.org_id").await),
            vec![vec!["''".to_string()]]
        );
        svc.batch_execute("SET orgwall.org_id = 'org_b'")
            .await
            .expect("bind org_b");
        assert_eq!(
            one(run_simple(&svc, "SHOW orgwall.org_id").await),
            vec![vec!["'org_b'".to_string()]]
        );

        assert_eq!(org_checksums(&admin, "org_b", false).await, b_before);
        let leaked: Vec<_> = admin
            .query("SELECT title FROM tickets WHERE org_id = 'org_b'", &[])
            .await
            .expect("tickets of B")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        assert_eq!(leaked, vec!["SECRET ticket".to_string()]);
    })
    .await;
}

/// Advisory locks live in a key space per tenant: A's lock blocks A's other sessions, never B,
/// and B cannot name A's key even with the two-key form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_xact_locks_are_per_tenant() {
    bounded(120, async {
        let db = tenant_db("stacks_locks").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(4, "transaction")).await;
        let a1 = connect(&proxy.conn_str(TENANT_A)).await;
        let a2 = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        a1.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(99)")
            .await
            .expect("A takes its lock");
        let got = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .expect("a row")
        };
        let a_again = a2
            .simple_query("SELECT pg_try_advisory_xact_lock(99)")
            .await
            .expect("A's second session");
        assert_eq!(got(a_again), "f", "the same tenant's key is taken");
        let b_same = b
            .simple_query("SELECT pg_try_advisory_xact_lock(99)")
            .await
            .expect("B");
        assert_eq!(got(b_same), "t", "B's key 99 is its own");
        let b_named = b
            .simple_query("SELECT pg_try_advisory_xact_lock(hashtext('org_a'), hashtext('99'))")
            .await
            .expect("B naming A's key");
        assert_eq!(got(b_named), "t", "B cannot reach A's key space");
        a1.batch_execute("COMMIT").await.expect("A commits");
        let a_after = a2
            .simple_query("SELECT pg_try_advisory_xact_lock(99)")
            .await
            .expect("A again");
        assert_eq!(got(a_after), "t", "released at commit");
    })
    .await;
}

/// psql's `\d table` (it reads `pg_roles` for the policies) and `\dt` work as a tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_works_for_a_tenant() {
    bounded(120, async {
        let db = tenant_db("stacks_psql").await;
        let proxy = tenant_proxy(&db, ProxyOptions::default()).await;
        let out = psql(
            &proxy,
            TENANT_A,
            "disable",
            &["-v", "ON_ERROR_STOP=1", "-c", "\\d items", "-c", "\\dt"],
            None,
        )
        .await;
        out.assert_success("psql \\d items as a tenant");
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        for want in [
            "item_number",
            "org_id",
            "Policies:",
            "orgwall_tenant_isolation",
            "inventory_ledger",
        ] {
            assert!(out.stdout.contains(want), "{want} missing:\n{}", out.stdout);
        }
    })
    .await;
}

/// `currval` never shows a value another tenant drew: a pooled server connection's sequence
/// state is discarded whenever its tenant context changes, so after B's `nextval` on the one
/// server connection, A's `currval` fails as on a fresh session (`55000`); A's own draws —
/// explicit or by a column default — are still A's to read back in the same transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currval_never_shows_another_tenants_value() {
    bounded(120, async {
        let db = tenant_db("stacks_currval").await;
        db.psql(&orgwall_schema()).await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, "transaction")).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let value = |o: Outcome| match o {
            Outcome::Rows(r) => r.rows.into_iter().flatten().collect::<Vec<_>>(),
            other => panic!("{other}"),
        };
        for round in 0..3 {
            let drawn = value(run_simple(&b, "SELECT nextval('tickets_id_seq')").await);
            match run_simple(&a, "SELECT currval('tickets_id_seq')").await {
                Outcome::Error { code, .. } if code == "55000" => {}
                other => panic!("round {round}: A read B's draw {drawn:?}: {other}"),
            }
            // A's own draws, in one transaction.
            let mine = value(
                run_simple(
                    &a,
                    "BEGIN; SELECT nextval('tickets_id_seq'); SELECT currval('tickets_id_seq'); COMMIT",
                )
                .await,
            );
            assert_eq!(mine.len(), 2, "{mine:?}");
            assert_eq!(mine[0], mine[1], "A's currval is A's nextval");
            let inserted = value(
                run_simple(
                    &a,
                    "BEGIN; INSERT INTO tickets (title) VALUES ('by default') RETURNING id; \
                     SELECT currval('tickets_id_seq'); COMMIT",
                )
                .await,
            );
            assert_eq!(inserted.len(), 2, "{inserted:?}");
            assert_eq!(inserted[0], inserted[1], "a column default's draw reads back");
            // And B, after A used the connection, does not see A's.
            match run_simple(&b, "SELECT currval('tickets_id_seq')").await {
                Outcome::Error { code, .. } if code == "55000" => {}
                other => panic!("round {round}: B read A's draw: {other}"),
            }
        }
    })
    .await;
}
