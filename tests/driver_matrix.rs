//! The driver matrix (issue 18): one small program per stack does what an app does — connect,
//! introspect, CRUD with RETURNING, a join, an aggregate, a transaction that rolls back, a
//! prepared statement used more than five times, a unique violation, several pool checkouts,
//! COPY out and in where the stack has it — as tenant A through Orgwall and directly under
//! row-level security (`harness/drivers.rs`); the transcripts must be equal.

use orgwall_e2e::bounded;
use orgwall_e2e::clients::{go, java, node, prisma, python, ruby};
use orgwall_e2e::drivers::{same_as_row_level_security, transcripts_match_row_level_security};

#[path = "sqlx_flow.rs"]
mod sqlx_flow;

/// asyncpg's `Pool`: every release resets the connection (`pg_advisory_unlock_all()`,
/// `CLOSE ALL`, `UNLISTEN *`, `RESET ALL`); `copy_records_to_table` (binary COPY FROM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_pool() {
    bounded(
        300,
        same_as_row_level_security("m_asyncpg", "asyncpg_pool_flow.py", |t| async move {
            python("asyncpg_pool_flow.py", &[t.url()], 120).await
        }),
    )
    .await;
}

/// psycopg 3's `cursor.copy()`: COPY FROM in text (`write_row`), binary (`set_types`) and csv
/// (`write`), in and out of the client's transactions (the reference inserts the same rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_copy() {
    bounded(
        300,
        same_as_row_level_security("m_psycopg_copy", "psycopg_copy_flow.py", |t| async move {
            python("psycopg_copy_flow.py", &[t.url()], 120).await
        }),
    )
    .await;
}

/// node-postgres (`pg`) with its `Pool`, named prepared statements, `pg-copy-streams` for COPY
/// out and in (the reference, where PostgreSQL refuses COPY FROM, inserts the same rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    bounded(
        300,
        same_as_row_level_security("m_node_pg", "pg_flow.js", |t| async move {
            node("pg_flow.js", &[t.url()], 120).await
        }),
    )
    .await;
}

/// postgres.js: every query a named prepared statement, its own pool, `sql.begin`, COPY out and
/// in (`.readable()`, `.writable()`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_js() {
    bounded(
        300,
        same_as_row_level_security("m_postgres_js", "postgres_flow.js", |t| async move {
            node("postgres_flow.js", &[t.url()], 120).await
        }),
    )
    .await;
}

/// Prisma 7's Rust-free client over `@prisma/adapter-pg` (node-postgres underneath): finds with
/// where/orderBy/include (relation joins), a compound unique key, creates (nested too),
/// updates, upsert and deletes answered from RETURNING, aggregate/count/groupBy, a batch
/// `$transaction` and an interactive one that throws, the same query seven times, `P2002`,
/// concurrent queries on the pool, `$queryRaw`/`$executeRaw` with tagged-template parameters,
/// and another tenant's `org_id` and rows (refused, or nothing). Prisma has no COPY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma_pg_adapter() {
    bounded(
        300,
        same_as_row_level_security("m_prisma", "prisma flow.ts", |t| async move {
            prisma("flow.ts", &[t.url()], 120).await
        }),
    )
    .await;
}

/// pgjdbc with a HikariCP pool: `DatabaseMetaData` (columns, primary keys, unique indexes,
/// imported keys, schemas, type info: `current_schemas`, `_pg_expandarray`, `pg_settings`),
/// jsonb/interval/inet through `getObject`, a statement past `prepareThreshold`, COPY out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_hikaricp() {
    bounded(
        300,
        same_as_row_level_security("m_pgjdbc", "JdbcFlow.java", |t| async move {
            java("JdbcFlow.java", &t.args(), 180).await
        }),
    )
    .await;
}

/// ActiveRecord (Rails) over ruby-pg: its connect-time settings and type map, primary keys
/// read with `current_schemas(false)`, prepared statements, `transaction` with `Rollback`,
/// `RecordNotUnique`, its connection pool from threads, COPY out through the raw connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activerecord() {
    bounded(
        300,
        same_as_row_level_security("m_activerecord", "activerecord_flow.rb", |t| async move {
            ruby("activerecord_flow.rb", &t.args(), 120).await
        }),
    )
    .await;
}

/// pgx v4 (Go) with a `pgxpool` pool, built from Debian's packages: arguments prepared under
/// pgx's names and cached per connection (also `statement_cache_mode=describe`, a named
/// `Prepare`, the simple protocol), `Exec`, `BeginTx` rolled back and committed, a batch (one
/// pipeline, one Sync) and one that names the other tenant, `[]string` and jsonb arguments, an
/// upsert, jsonb/interval/inet/numeric/timestamptz through `Values`, `pgx.Identifier`, `23505`,
/// COPY out (`PgConn().CopyTo`) and binary COPY in (`CopyFrom`: 3000 rows in a transaction, a
/// failing source, another tenant's `org_id` or item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgx_pool() {
    bounded(
        300,
        same_as_row_level_security("m_pgx", "pgx_flow.go", |t| async move {
            go("pgx_flow.go", &[t.url()], 180).await
        }),
    )
    .await;
}

/// sqlx's `PgPool` (Rust): statements prepared as `sqlx_s_N` and cached per connection,
/// `begin`/`rollback`, COPY out and in (`copy_in_raw`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool() {
    bounded(
        300,
        transcripts_match_row_level_security("m_sqlx", "sqlx", sqlx_flow::flow),
    )
    .await;
}
