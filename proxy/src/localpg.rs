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

#[derive(Debug, Clone)]
struct Bins {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
    runuser: Option<PathBuf>,
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

    fn prepare_dirs(&self) -> Result<(), LocalPgError> {
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot chmod {}", self.data_dir.display())))?;
        let Some(ra) = &self.run_as else {
            return Ok(());
        };
        let chown = |p: &Path| {
            std::os::unix::fs::chown(p, Some(ra.uid), Some(ra.gid))
                .map_err(io_err(format!("cannot chown {} to postgres", p.display())))
        };
        chown(&self.data_dir)?;
        let meta =
            std::fs::metadata(&self.base_dir).map_err(io_err("cannot stat data dir parent"))?;
        // A shared sticky directory such as /tmp stays as it is; postgres may write there anyway.
        if meta.uid() != ra.uid && meta.mode() & 0o1000 == 0 && self.base_dir != Path::new("/") {
            chown(&self.base_dir)?;
        }
        let mut check = self.server_cmd(Path::new("/bin/sh"));
        check.args(["-c", "test -w \"$0\" && test -w \"$1\" && test -x \"$1\""]);
        check.arg(&self.base_dir).arg(&self.data_dir);
        if !check.status().map(|s| s.success()).unwrap_or(false) {
            return Err(LocalPgError::DataDirNotReachable(self.base_dir.clone()));
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), LocalPgError> {
        let name = self
            .data_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let pwfile = self
            .base_dir
            .join(format!(".{name}.pw.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&pwfile)?;
            f.write_all(self.password.as_bytes())?;
            f.write_all(b"\n")?;
            if let Some(ra) = &self.run_as {
                std::os::unix::fs::chown(&pwfile, Some(ra.uid), Some(ra.gid))?;
            }
            Ok(())
        };
        write().map_err(io_err(format!("cannot write {}", pwfile.display())))?;
        let mut cmd = self.server_cmd(&self.bins.initdb);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg(format!("--pwfile={}", pwfile.display()));
        let flags =
            "-U postgres --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C";
        cmd.args(flags.split(' '))
            .args(["--no-instructions", "--no-sync"]);
        let res = run(cmd);
        let _ = std::fs::remove_file(&pwfile);
        res.map(drop)
    }

    /// Writes `orgwall.conf`, starts the server (retrying on a fresh port when the picked one
    /// was taken) and waits until a TCP login with the password works.
    fn boot(&mut self, port: Option<u16>, fresh: bool) -> Result<(), LocalPgError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            self.write_conf()?;
            let log_start = std::fs::metadata(&self.log_path)
                .map(|m| m.len())
                .unwrap_or(0);
            match self.pg_ctl(&["start", "-t", &START_TIMEOUT.as_secs().to_string()]) {
                Ok(_) => break,
                Err(e) => {
                    let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
                    let log = read_from(&self.log_path, log_start);
                    if port.is_none() && attempt < 4 && log.contains("could not bind") {
                        continue;
                    }
                    return Err(self.start_error(e.to_string(), log_start));
                }
            }
        }
        self.running = true;
        self.watcher = self.spawn_watcher();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut password_reset = fresh;
        loop {
            match self.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(LocalPgError::Psql { stderr, .. })
                    if stderr.contains("password authentication failed") && !password_reset =>
                {
                    password_reset = true;
                    self.reset_password_over_socket()?;
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(self.start_error(e.to_string(), 0))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// An existing cluster whose password differs from the requested one: local (socket)
    /// connections are `trust`, so set it there.
    fn reset_password_over_socket(&self) -> Result<(), LocalPgError> {
        let sql = format!(
            "ALTER ROLE postgres PASSWORD '{}'",
            self.password.replace('\'', "''")
        );
        psql_output(
            self.psql_cmd(self.data_dir.as_os_str(), "postgres"),
            "postgres",
            &sql,
        )
        .map(drop)
    }

    /// `psql` as the superuser on `host` (an address or a socket directory), reading stdin.
    fn psql_cmd(&self, host: &std::ffi::OsStr, db: &str) -> Command {
        let mut cmd = Command::new(&self.bins.psql);
        cmd.args("-X -q -v ON_ERROR_STOP=1 -f - -h".split(' '))
            .arg(host);
        cmd.args([
            "-p",
            &self.port.to_string(),
            "-U",
            &self.superuser,
            "-d",
            db,
        ]);
        cmd.env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable");
        cmd.env_remove("PGOPTIONS").env_remove("PGSERVICE");
        cmd
    }

    fn write_conf(&self) -> Result<(), LocalPgError> {
        let socket_dir = self.data_dir.to_string_lossy().into_owned();
        // Unix socket paths are limited to 107 bytes; without one, TCP still works.
        let socket_dir = if socket_dir.len() + 20 < 100 {
            socket_dir
        } else {
            String::new()
        };
        let mut settings: Vec<(String, String)> = [
            ("port", self.port.to_string()),
            ("listen_addresses", "127.0.0.1".into()),
            ("unix_socket_directories", socket_dir),
            ("wal_level", "logical".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("fsync", "off".into()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("max_connections", "200".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        settings.extend(self.extra_conf.iter().cloned());
        let mut text =
            String::from("# Written by Orgwall on every start; edits are overwritten.\n");
        for (k, v) in settings {
            text += &format!("{k} = '{}'\n", v.replace('\\', "\\\\").replace('\'', "''"));
        }
        let conf = self.data_dir.join("orgwall.conf");
        std::fs::write(&conf, text).map_err(io_err(format!("cannot write {}", conf.display())))?;
        let main_conf = self.data_dir.join("postgresql.conf");
        let current = std::fs::read_to_string(&main_conf)
            .map_err(io_err(format!("cannot read {}", main_conf.display())))?;
        const INCLUDE: &str = "include_if_exists = 'orgwall.conf'";
        if !current.lines().any(|l| l.trim() == INCLUDE) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&main_conf)
                .map_err(io_err(format!("cannot open {}", main_conf.display())))?;
            writeln!(f, "\n{INCLUDE}")
                .map_err(io_err(format!("cannot write {}", main_conf.display())))?;
        }
        if let Some(ra) = &self.run_as {
            std::os::unix::fs::chown(&conf, Some(ra.uid), Some(ra.gid))
                .map_err(io_err(format!("cannot chown {}", conf.display())))?;
        }
        Ok(())
    }

    /// Runs `pg_ctl <action> -D <data_dir> -l <log> -w -s …` (as postgres when root).
    fn pg_ctl(&self, args: &[&str]) -> Result<String, LocalPgError> {
        let mut cmd = self.server_cmd(&self.bins.pg_ctl);
        cmd.arg(args[0])
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path);
        cmd.args(["-w", "-s"]).args(&args[1..]);
        run(cmd)
    }

    /// A process in its own process group that waits for EOF on its stdin — which happens when
    /// this process exits, however it exits — and then stops the server.
    fn spawn_watcher(&self) -> Option<Child> {
        let mut cmd = self.server_cmd(Path::new("/bin/sh"));
        cmd.args([
            "-c",
            "cat >/dev/null 2>&1; exec \"$0\" stop -D \"$1\" -m fast -w -s -t 60 >/dev/null 2>&1",
        ]);
        cmd.arg(&self.bins.pg_ctl).arg(&self.data_dir);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        match cmd.spawn() {
            Ok(child) => Some(child),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the PostgreSQL watcher; the server outlives a crash");
                None
            }
        }
    }

    /// A command for a server program: as the postgres user when root, in a directory it can read.
    fn server_cmd(&self, program: &Path) -> Command {
        let mut cmd = match &self.run_as {
            Some(RunAs {
                runuser: Some(runuser),
                ..
            }) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            Some(RunAs {
                uid,
                gid,
                runuser: None,
            }) => {
                let mut c = Command::new(program);
                c.uid(*uid).gid(*gid);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(&self.base_dir)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        cmd
    }

    fn start_error(&self, why: String, log_from: u64) -> LocalPgError {
        let log = read_from(&self.log_path, log_from);
        let lines: Vec<&str> = log.lines().collect();
        LocalPgError::Start {
            data_dir: self.data_dir.clone(),
            port: self.port,
            why,
            log: self.log_path.clone(),
            log_tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop()
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, LocalPgError> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("cannot pick a free port"))?;
    Ok(l.local_addr()
        .map_err(io_err("cannot pick a free port"))?
        .port())
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut s = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f
            .seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_to_end(&mut s));
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn run(mut cmd: Command) -> Result<String, LocalPgError> {
    let command = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("cannot run {command}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let output = format!("{}{}", stdout, String::from_utf8_lossy(&out.stderr))
        .trim()
        .to_string();
    Err(LocalPgError::Command {
        command,
        status: out.status.to_string(),
        output,
    })
}

/// Runs psql with `sql` on stdin (written from a thread, so large outputs cannot deadlock);
/// returns stdout, or stderr as the error.
fn psql_output(mut cmd: Command, db: &str, sql: &str) -> Result<String, LocalPgError> {
    let what = format!("cannot run {:?}", cmd.get_program());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(io_err(what.clone()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = sql.as_bytes().to_vec();
    // psql may exit early on an error; that is reported from its exit status.
    let writer = std::thread::spawn(move || drop(stdin.write_all(&input)));
    let out = child.wait_with_output().map_err(io_err(what))?;
    let _ = writer.join();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(LocalPgError::Psql {
            db: db.into(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_bins() -> Result<Bins, LocalPgError> {
    static BINS: OnceLock<(Option<PathBuf>, Option<PathBuf>)> = OnceLock::new();
    let (server, psql) = BINS.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        if let Ok(out) = Command::new("pg_config")
            .arg("--bindir")
            .stderr(Stdio::null())
            .output()
        {
            if out.status.success() {
                dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
        }
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        dirs.extend(versioned.into_iter().map(|(_, d)| d));
        let server = dirs
            .iter()
            .find(|d| {
                ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|b| is_executable(&d.join(b)))
            })
            .cloned();
        // Prefer the psql that ships with the server.
        let psql = server
            .iter()
            .chain(dirs.iter())
            .map(|d| d.join("psql"))
            .find(|p| is_executable(p));
        (server, psql)
    });
    let server = server.as_ref().ok_or(LocalPgError::BinariesNotFound)?;
    Ok(Bins {
        initdb: server.join("initdb"),
        pg_ctl: server.join("pg_ctl"),
        psql: psql.clone().ok_or(LocalPgError::PsqlNotFound)?,
    })
}

fn run_as() -> Result<Option<RunAs>, LocalPgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let (uid, gid) = lookup_user("postgres").ok_or(LocalPgError::NoPostgresUser)?;
    let runuser = [
        "/usr/sbin/runuser",
        "/sbin/runuser",
        "/usr/bin/runuser",
        "/bin/runuser",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| is_executable(p));
    Ok(Some(RunAs { uid, gid, runuser }))
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam_r writes only into `pwd` and `buf`, both live and sized as passed.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
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
