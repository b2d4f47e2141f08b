//! A private, throw-away or persistent PostgreSQL server for `orgwall demo` and the tests.
//!
//! [`LocalPostgres::start`] runs `initdb` when the data directory holds no cluster yet, writes the
//! settings Orgwall needs (TCP on 127.0.0.1, `wal_level = logical`, durability off) to
//! `orgwall.conf` inside it, and starts the server with `pg_ctl`. The server log is the file
//! `<data_dir>.log` next to the data directory. PostgreSQL refuses to run as root, so as root
//! every server command runs as the `postgres` system user (`runuser -u postgres --`).
//!
//! Stopping is reliable in three layers: [`LocalPostgres::stop`] (also on drop) runs
//! `pg_ctl stop -m fast`; if this process dies without dropping the handle (a `static`, SIGKILL,
//! an aborting panic), a small watcher process notices that its stdin pipe closed and stops the
//! server; and a later `start` on the same data directory stops a server left running there.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod cluster;
mod host;

pub use host::free_port;
use host::*;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a local PostgreSQL could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error("PostgreSQL server binaries not found: install them with `apt-get install -y postgresql` (Debian/Ubuntu), `dnf install postgresql-server` (Fedora) or `brew install postgresql@15` (macOS), or put the directory holding `initdb`, `pg_ctl` and `postgres` on PATH")]
    BinariesNotFound,
    #[error(
        "`psql` not found: install it with `apt-get install -y postgresql-client` (Debian/Ubuntu)"
    )]
    PsqlNotFound,
    #[error("running as root, but PostgreSQL refuses to run as root and there is no `postgres` system user: create one with `useradd --system --user-group --home-dir /var/lib/postgresql postgres`")]
    NoPostgresUser,
    #[error("the `postgres` user cannot write to {0}: make every parent directory searchable by it (`chmod o+x`) or choose a data directory elsewhere")]
    DataDirNotReachable(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("PostgreSQL in {data_dir} did not start on port {port}: {why}\n--- end of {log} ---\n{log_tail}")]
    Start {
        data_dir: PathBuf,
        port: u16,
        why: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("psql on database `{db}` failed: {stderr}")]
    Psql { db: String, stderr: String },
    #[error("invalid setting `{0}`: names are letters, digits, `_` and `.`")]
    BadSetting(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalPgError {
    let what = what.into();
    move |source| LocalPgError::Io { what, source }
}

/// How to start a [`LocalPostgres`].
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// The cluster directory; created (with `initdb`) when it holds no `PG_VERSION`.
    pub data_dir: PathBuf,
    /// `None` picks a free port.
    pub port: Option<u16>,
    /// The `postgres` superuser's password; set by `initdb`, and reset on start if it changed.
    pub superuser_password: String,
    /// Extra `postgresql.conf` settings, applied after Orgwall's own.
    pub extra_conf: Vec<(String, String)>,
}

/// A running PostgreSQL server owned by this process; stopped on drop.
#[derive(Debug)]
pub struct LocalPostgres {
    pub port: u16,
    pub data_dir: PathBuf,
    pub superuser: String,
    pub password: String,
    /// The server log (`<data_dir>.log`).
    pub log_path: PathBuf,
    bins: Bins,
    run_as: Option<RunAs>,
    base_dir: PathBuf,
    extra_conf: Vec<(String, String)>,
    running: bool,
    watcher: Option<Child>,
}

impl LocalPostgres {
    /// Creates the cluster if needed, starts it and waits until it accepts connections.
    pub fn start(opts: LocalPgOptions) -> Result<LocalPostgres, LocalPgError> {
        let bins = find_bins()?;
        let run_as = run_as()?;
        let valid = |k: &str| {
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        if let Some((k, _)) = opts
            .extra_conf
            .iter()
            .find(|(k, _)| k.is_empty() || !valid(k))
        {
            return Err(LocalPgError::BadSetting(k.clone()));
        }
        let data_dir = std::path::absolute(&opts.data_dir).map_err(io_err("bad data dir"))?;
        std::fs::create_dir_all(&data_dir)
            .map_err(io_err(format!("cannot create {}", data_dir.display())))?;
        let base_dir = data_dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let log_path = base_dir.join(format!("{}.log", name.as_deref().unwrap_or("postgres")));
        let mut pg = LocalPostgres {
            port: opts.port.unwrap_or(0),
            data_dir,
            superuser: "postgres".into(),
            password: opts.superuser_password,
            log_path,
            bins,
            run_as,
            base_dir,
            extra_conf: opts.extra_conf,
            running: false,
            watcher: None,
        };
        pg.prepare_dirs()?;
        let fresh = !pg.data_dir.join("PG_VERSION").exists();
        if fresh {
            pg.initdb()?;
        } else if pg.pg_ctl(&["status"]).is_ok() {
            tracing::warn!(data_dir = %pg.data_dir.display(), "stopping a PostgreSQL left running in the data directory");
            pg.running = true;
            pg.stop();
        }
        pg.boot(opts.port, fresh)?;
        Ok(pg)
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            pct(&self.superuser),
            pct(&self.password),
            self.port,
            pct(db)
        )
    }

    /// The same over the Unix socket in the data directory (`?host=<dir>`), when the directory's
    /// path is short enough for one (see `write_conf`).
    pub fn socket_url(&self, db: &str) -> Option<String> {
        let dir = self.data_dir.to_str()?;
        (dir.len() + 20 < 100).then(|| format!("{}?host={}", self.url(db), pct(dir)))
    }

    /// Runs `sql` through `psql -X -q -v ON_ERROR_STOP=1 -At` over TCP as the superuser and
    /// returns its standard output without the final newline (rows `|`-separated, no headers).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, LocalPgError> {
        let mut cmd = self.psql_cmd("127.0.0.1".as_ref(), db);
        cmd.arg("-At").env("PGPASSWORD", &self.password);
        let mut out = psql_output(cmd, db, sql)?;
        if out.ends_with('\n') {
            out.pop();
        }
        Ok(out)
    }

    /// Creates database `name` unless it exists.
    pub fn create_database(&self, name: &str) -> Result<(), LocalPgError> {
        let lit = name.replace('\'', "''");
        let exists = self.psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{lit}'"),
        )?;
        if exists.is_empty() {
            let ident = name.replace('"', "\"\"");
            match self.psql("postgres", &format!("CREATE DATABASE \"{ident}\"")) {
                Err(LocalPgError::Psql { stderr, .. }) if stderr.contains("already exists") => {}
                other => other.map(drop)?,
            }
        }
        Ok(())
    }

    /// Stops the server (fast shutdown) and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), LocalPgError> {
        self.stop();
        self.boot(Some(self.port), false)
    }

    /// `pg_ctl stop -m fast` (immediate if that fails); does nothing when already stopped.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        if let Err(e) = self.pg_ctl(&["stop", "-m", "fast", "-t", "60"]) {
            if self.pg_ctl(&["status"]).is_ok() {
                tracing::warn!(error = %e, "fast shutdown failed; using immediate");
                let _ = self.pg_ctl(&["stop", "-m", "immediate", "-t", "60"]);
            }
        }
        if let Some(mut w) = self.watcher.take() {
            drop(w.stdin.take()); // its pg_ctl stop finds no server and exits
            let _ = w.wait();
        }
    }

    /// Whether [`stop`](Self::stop) has not been called since the last successful start.
    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unique scratch directory under /tmp, removed on drop.
    pub(crate) struct Scratch(pub PathBuf);
    impl Scratch {
        pub(crate) fn new(tag: &str) -> Scratch {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let p = PathBuf::from(format!("/tmp/orgwall-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(pct("a-b.c_d~9"), "a-b.c_d~9");
        assert_eq!(pct("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    #[test]
    fn start_psql_restart_stop() {
        let dir = Scratch::new("localpg-test");
        let opts = LocalPgOptions {
            data_dir: dir.0.join("pgdata"),
            port: None,
            superuser_password: "s3cret'pw".into(),
            extra_conf: vec![("cluster_name".into(), r"it's \orgwall".into())],
        };
        let mut pg = LocalPostgres::start(opts.clone()).unwrap();
        assert!(pg
            .url("app")
            .starts_with("postgres://postgres:s3cret%27pw@127.0.0.1:"));
        assert_eq!(pg.psql("postgres", "SHOW wal_level").unwrap(), "logical");
        assert_eq!(
            pg.psql("postgres", "SHOW cluster_name").unwrap(),
            r"it's \orgwall"
        );
        pg.create_database("app").unwrap();
        pg.create_database("app").unwrap();
        pg.psql(
            "app",
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        assert_eq!(
            pg.psql("app", "SELECT x FROM t ORDER BY x").unwrap(),
            "1\n2"
        );
        let err = pg.psql("app", "SELECT nope").unwrap_err().to_string();
        assert!(err.contains("column \"nope\" does not exist"), "{err}");

        let port = pg.port;
        pg.restart().unwrap();
        assert_eq!(pg.port, port);
        assert_eq!(pg.psql("app", "SELECT count(*) FROM t").unwrap(), "2");
        pg.stop();
        pg.stop();
        assert!(pg.psql("app", "SELECT 1").is_err());
        drop(pg);

        // Re-using the cluster with a new password resets it.
        let mut again = LocalPostgres::start(LocalPgOptions {
            superuser_password: "other".into(),
            ..opts
        })
        .unwrap();
        assert_eq!(again.psql("app", "SELECT count(*) FROM t").unwrap(), "2");
        again.stop();
        assert!(std::fs::read_to_string(&again.log_path)
            .unwrap()
            .contains("database system is ready"));
    }
}
