//! The real PostgreSQL behind the tests: one `orgwall::localpg::LocalPostgres` per test binary,
//! started lazily in a temp dir under /tmp and stopped + removed at process exit (an `atexit`
//! handler, since Rust statics are never dropped); a fresh database per test; and dedicated
//! instances for tests that must disturb the server (restarts).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use orgwall::localpg::{LocalPgOptions, LocalPostgres};

/// The superuser password of every test PostgreSQL (it only listens on 127.0.0.1).
pub const SUPERUSER_PASSWORD: &str = "e2e-super-pw";

/// One running PostgreSQL and the folder that holds it.
pub struct PgServer {
    pg: Mutex<Option<LocalPostgres>>,
    port: u16,
    root: PathBuf,
}

impl PgServer {
    fn start(label: &str, extra_conf: Vec<(String, String)>) -> PgServer {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "orgwall-e2e-{}-{label}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create PostgreSQL temp dir");
        let opts = LocalPgOptions {
            data_dir: root.join("pgdata"),
            port: None,
            superuser_password: SUPERUSER_PASSWORD.to_string(),
            // LocalPostgres already sets what the tests need (logical WAL, 200 connections);
            // `extra_conf` comes after its settings, so it can override them.
            extra_conf,
        };
        let pg = LocalPostgres::start(opts).unwrap_or_else(|e| {
            let _ = std::fs::remove_dir_all(&root);
            panic!(
                "could not start the test PostgreSQL: {e}\n\
                 The end-to-end tests need the PostgreSQL server binaries (initdb, postgres) \
                 on PATH or under `pg_config --bindir`. Install them with \
                 `apt-get install -y postgresql`."
            )
        });
        PgServer {
            port: pg.port,
            pg: Mutex::new(Some(pg)),
            root,
        }
    }

    /// The port PostgreSQL listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn with<R>(&self, f: impl FnOnce(&mut LocalPostgres) -> R) -> R {
        let mut guard = self.pg.lock().unwrap_or_else(|p| p.into_inner());
        let pg = guard.as_mut().expect("test PostgreSQL already stopped");
        f(pg)
    }

    /// A superuser URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        self.with(|pg| pg.url(db))
    }

    /// A superuser URL for database `db` over the Unix socket in the data directory.
    pub fn socket_url(&self, db: &str) -> String {
        self.with(|pg| pg.socket_url(db))
            .expect("the test data directory's path is short enough for a Unix socket")
    }

    /// Runs SQL with psql as the superuser, directly against PostgreSQL (not the proxy).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.with(|pg| pg.psql(db, sql))
            .unwrap_or_else(|e| panic!("direct psql on {db} failed: {e}\n{sql}"))
    }

    /// Restarts the server in place (same port, same data); also starts a stopped one.
    pub fn restart(&self) {
        self.with(|pg| pg.restart())
            .unwrap_or_else(|e| panic!("restarting the test PostgreSQL failed: {e}"));
    }

    /// Stops the server, keeping its data; [`restart`](Self::restart) brings it back.
    pub fn stop(&self) {
        self.with(|pg| pg.stop());
    }

    /// Stops the server and removes its folder; idempotent.
    fn stop_and_remove(&self) {
        let taken = match self.pg.try_lock() {
            Ok(mut g) => g.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
            // Someone holds the lock at exit: leave it rather than deadlock the exit path.
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut pg) = taken {
            pg.stop();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

static SHARED: OnceLock<Arc<PgServer>> = OnceLock::new();

extern "C" fn stop_shared_at_exit() {
    if let Some(s) = SHARED.get() {
        s.stop_and_remove();
    }
}

/// The PostgreSQL shared by all tests of this binary, started on first use (blocking).
pub fn shared_postgres() -> Arc<PgServer> {
    SHARED
        .get_or_init(|| {
            let s = Arc::new(PgServer::start("pg", Vec::new()));
            // SAFETY: registering a plain `extern "C" fn` with no arguments is always sound.
            let rc = unsafe { libc::atexit(stop_shared_at_exit) };
            assert_eq!(rc, 0, "atexit registration failed");
            s
        })
        .clone()
}

/// A PostgreSQL owned by one test (for restarts); stopped and removed when dropped.
pub struct DedicatedPostgres {
    pub server: Arc<PgServer>,
}

/// Starts a PostgreSQL that only the calling test uses.
pub async fn dedicated_postgres() -> DedicatedPostgres {
    dedicated_postgres_with(&[]).await
}

/// Starts a PostgreSQL that only the calling test uses, with extra `postgresql.conf` settings
/// (written after the harness's own, so `("wal_level", "replica")` overrides `logical`).
pub async fn dedicated_postgres_with(settings: &[(&str, &str)]) -> DedicatedPostgres {
    let extra: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let server = tokio::task::spawn_blocking(move || Arc::new(PgServer::start("dedicated", extra)))
        .await
        .expect("start dedicated PostgreSQL");
    DedicatedPostgres { server }
}

impl Drop for DedicatedPostgres {
    fn drop(&mut self) {
        self.server.stop_and_remove();
    }
}

/// A database created for one test.
pub struct TestDb {
    pub name: String,
    pub server: Arc<PgServer>,
}

impl TestDb {
    /// Creates a uniquely named database on the shared server.
    pub async fn create(label: &str) -> TestDb {
        let server = tokio::task::spawn_blocking(shared_postgres)
            .await
            .expect("start shared PostgreSQL");
        Self::create_on(server, label).await
    }

    /// Creates a uniquely named database on `server`.
    pub async fn create_on(server: Arc<PgServer>, label: &str) -> TestDb {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("{clean}_{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let s = server.clone();
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            s.with(|pg| pg.create_database(&n))
                .unwrap_or_else(|e| panic!("create database {n}: {e}"))
        })
        .await
        .expect("create database task");
        TestDb { name, server }
    }

    /// The URL the proxy uses to reach this database (superuser).
    pub fn upstream_url(&self) -> String {
        self.server.url(&self.name)
    }

    /// The same over PostgreSQL's Unix socket.
    pub fn upstream_socket_url(&self) -> String {
        self.server.socket_url(&self.name)
    }

    /// A tokio-postgres connection string straight to PostgreSQL, bypassing the proxy.
    pub fn direct_conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={SUPERUSER_PASSWORD} dbname={}",
            self.server.port(),
            self.name
        )
    }

    /// Runs SQL directly against PostgreSQL with psql (blocking the calling task briefly).
    pub async fn psql(&self, sql: &str) -> String {
        let s = self.server.clone();
        let (db, sql) = (self.name.clone(), sql.to_string());
        tokio::task::spawn_blocking(move || s.psql(&db, &sql))
            .await
            .expect("direct psql task")
    }
}
