//! sqlx's side of the driver matrix (`driver_matrix.rs`): what an app using sqlx's `PgPool`
//! does, as a transcript of one line per result. Plain `sqlx::query` (prepared statements named
//! `sqlx_s_N`, cached per connection), no compile-time macros (their `describe` is issue 23's);
//! COPY out and in (`copy_out_raw`, `copy_in_raw`).

use std::fmt::Write as _;

use futures_util::TryStreamExt;
use orgwall_e2e::drivers::Target;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::Row;

/// Runs the flow against `t`; the transcript, or the first unexpected error.
pub async fn flow(t: Target) -> Result<String, String> {
    run(t).await.map_err(|e| format!("{e:?}"))
}

async fn run(t: Target) -> Result<String, sqlx::Error> {
    let mut opts = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(t.port)
        .username(&t.user)
        .password(&t.password)
        .database(&t.dbname)
        .ssl_mode(PgSslMode::Disable);
    if let Some(o) = &t.options {
        opts = opts.options([("app.org_id", o.trim_start_matches("-c app.org_id="))]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await?;
    let mut out = String::new();
    let mut say = |what: &str, v: String| {
        let _ = writeln!(out, "{what} {v}");
    };
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = 'items' ORDER BY ordinal_position",
    )
    .fetch_all(&pool)
    .await?;
    say("introspect", format!("{cols:?}"));
    let row: (String, String, String) = sqlx::query_as(
        "INSERT INTO items (id, item_number, description) VALUES ($1, $2, $3) \
         RETURNING id, item_number, org_id",
    )
    .bind("i_sqlx1")
    .bind("S-1")
    .bind("Sqlx")
    .fetch_one(&pool)
    .await?;
    say("insert returning", format!("{row:?}"));
    let row: (String, Option<String>) =
        sqlx::query_as("UPDATE items SET description = $1 WHERE id = $2 RETURNING id, description")
            .bind("Sqlx 2")
            .bind("i_sqlx1")
            .fetch_one(&pool)
            .await?;
    say("update returning", format!("{row:?}"));
    let join: Vec<(String, String)> = sqlx::query_as(
        "SELECT l.id, i.item_number FROM inventory_ledger l JOIN items i ON i.id = l.item_id ORDER BY l.id",
    )
    .fetch_all(&pool)
    .await?;
    say("join", format!("{join:?}"));
    let agg: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT item_id, sum(quantity_delta)::text, count(*) FROM inventory_ledger GROUP BY item_id ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    say("aggregate", format!("{agg:?}"));
    let counts = futures_util::future::try_join_all((0..6i64).map(|i| {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) + $1 FROM users")
                .bind(i)
                .fetch_one(&pool)
                .await?;
            Ok::<_, sqlx::Error>(n)
        }
    }))
    .await?;
    say("checkouts", format!("{counts:?}"));
    let mut got = Vec::new();
    for id in ["i_a1", "i_a2", "i_b1", "i_sqlx1", "i_a1", "i_b2", "i_a3"] {
        let d: Option<Option<String>> =
            sqlx::query_scalar("SELECT description FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await?;
        got.push(d);
    }
    say("prepared x7", format!("{got:?}"));
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM items WHERE id = 'i_sqlx1'")
        .execute(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut *tx)
        .await?;
    say("deleted inside", n.to_string());
    tx.rollback().await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await?;
    say("after rollback", n.to_string());
    let dup = sqlx::query("INSERT INTO users (id, email) VALUES ('u_sqlx', 'alice@shared.test')")
        .execute(&pool)
        .await;
    match dup {
        Err(sqlx::Error::Database(e)) => say("unique violation", format!("{:?}", e.code())),
        other => say("unique violation missing", format!("{other:?}")),
    }
    let mut conn = pool.acquire().await?;
    let chunks: Vec<bytes::Bytes> = conn
        .copy_out_raw("COPY (SELECT id, item_number FROM items ORDER BY id) TO STDOUT")
        .await?
        .try_collect()
        .await?;
    let copied: Vec<u8> = chunks.concat();
    say("copied", format!("{:?}", String::from_utf8_lossy(&copied)));
    // COPY in (`copy_in_raw`); the reference, where PostgreSQL refuses COPY FROM under
    // row-level security (its target carries the org as an option), inserts the same rows.
    let flags = [("ff_sqlx_c1", "sqlx_copy_1"), ("ff_sqlx_c2", "sqlx_copy_2")];
    let n = if t.options.is_some() {
        for (id, key) in flags {
            sqlx::query("INSERT INTO feature_flags (id, key) VALUES ($1, $2)")
                .bind(id)
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
        flags.len() as u64
    } else {
        let mut copy = conn
            .copy_in_raw("COPY feature_flags (id, key) FROM STDIN")
            .await?;
        let data: String = flags
            .iter()
            .map(|(id, key)| format!("{id}\t{key}\n"))
            .collect();
        copy.send(data.as_bytes()).await?;
        copy.finish().await?
    };
    say("copy in", n.to_string());
    let flags: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, key, org_id FROM feature_flags ORDER BY id")
            .fetch_all(&mut *conn)
            .await?;
    say("copied in", format!("{flags:?}"));
    drop(conn);
    let rows = sqlx::query("DELETE FROM items WHERE id = $1 RETURNING id")
        .bind("i_sqlx1")
        .fetch_all(&pool)
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    say("delete returning", format!("{ids:?}"));
    pool.close().await;
    Ok(out)
}
