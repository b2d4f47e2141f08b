//! The backup guard: `up`/`down` on a database that holds rows need `--backup FILE` (a
//! `pg_dump` taken first and checked to be non-empty) or an explicit `--no-backup`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio_postgres::Client;

use super::{MigrateError, Target};

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupPolicy {
    /// Neither flag: refuse when the database has data.
    Required,
    /// `--no-backup`.
    Skip,
    /// `--backup FILE`.
    File(PathBuf),
}

/// Refuses, dumps, or lets the run go on, per `policy`.
pub(crate) async fn guard(
    client: &Client,
    target: &Target,
    policy: &BackupPolicy,
) -> Result<(), MigrateError> {
    match policy {
        BackupPolicy::Skip => Ok(()),
        BackupPolicy::Required => match first_table_with_rows(client).await? {
            Some(table) => Err(MigrateError::BackupRequired { table }),
            None => Ok(()),
        },
        BackupPolicy::File(path) => {
            let (target, path) = (target.clone(), path.clone());
            tokio::task::spawn_blocking(move || pg_dump(&target, &path))
                .await
                .map_err(|e| MigrateError::Backup {
                    path: PathBuf::new(),
                    why: e.to_string(),
                })?
        }
    }
}

/// The first user table (outside `orgwall`) that has at least one row.
async fn first_table_with_rows(client: &Client) -> Result<Option<String>, MigrateError> {
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'orgwall')
               AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(MigrateError::sql("listing tables"))?;
    for row in tables {
        let table: String = row.get(0);
        let has: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await
            .map_err(MigrateError::sql(format!("looking for rows in {table}")))?
            .get(0);
        if has {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// Runs `pg_dump` into `path` (plain SQL); the password goes through PGPASSWORD, not argv.
fn pg_dump(target: &Target, path: &Path) -> Result<(), MigrateError> {
    let fail = |why: String| MigrateError::Backup {
        path: path.to_path_buf(),
        why,
    };
    let bin = find_pg_dump().ok_or_else(|| {
        fail("pg_dump not found: install the PostgreSQL client (`apt-get install -y postgresql-client`)".into())
    })?;
    let c = &target.config;
    let mut cmd = Command::new(&bin);
    cmd.arg("--no-password").arg("--file").arg(path);
    if let Some(tokio_postgres::config::Host::Tcp(h)) = c.get_hosts().first() {
        cmd.arg("--host").arg(h);
    }
    if let Some(tokio_postgres::config::Host::Unix(p)) = c.get_hosts().first() {
        cmd.arg("--host").arg(p);
    }
    if let Some(p) = c.get_ports().first() {
        cmd.arg("--port").arg(p.to_string());
    }
    if let Some(u) = c.get_user() {
        cmd.arg("--username").arg(u);
    }
    if let Some(db) = c.get_dbname() {
        cmd.arg("--dbname").arg(db);
    }
    if let Some(pw) = c.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(pw).into_owned());
    }
    tracing::info!(file = %path.display(), "pg_dump");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(fail(format!(
            "pg_dump exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => Ok(()),
        Ok(_) => Err(fail("pg_dump wrote an empty file".into())),
        Err(e) => Err(fail(format!("cannot read the dump back: {e}"))),
    }
}

/// The newest `/usr/lib/postgresql/N/bin/pg_dump` (pg_dump must not be older than the server),
/// else the one on PATH.
fn find_pg_dump() -> Option<PathBuf> {
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            Some((n, e.path().join("bin/pg_dump")))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    if let Some((_, p)) = versioned.into_iter().next() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pg_dump"))
            .find(|p| p.is_file())
    })
}
