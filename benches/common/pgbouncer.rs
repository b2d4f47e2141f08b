//! PgBouncer in front of the bench cluster, for same-run comparisons (Debian: `apt-get install
//! -y pgbouncer`): transaction pooling, the same pool size as Orgwall, TCP, run as the
//! `postgres` user when the bench runs as root (PgBouncer refuses root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running PgBouncer; stopped on drop.
pub struct PgBouncer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer under `base/pgbouncer` for the PostgreSQL at `pg_port`, with
    /// `pool_size` server connections per database and user, logging in as `user`/`password`.
    pub fn start(
        base: &Path,
        pg_port: u16,
        pool_size: u32,
        user: &str,
        password: &str,
    ) -> anyhow::Result<PgBouncer> {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("pgbouncer not found (Debian: apt-get install -y pgbouncer)")?;
        let dir = base.join("pgbouncer");
        std::fs::create_dir_all(&dir)?;
        let port = orgwall::localpg::free_port()?;
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )?;
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={pg_port}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = plain\nauth_file = {}/userlist.txt\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmax_client_conn = 1000\nlogfile = {}/pgbouncer.log\n",
            dir.display(),
            dir.display()
        );
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini)?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .context("chown for pgbouncer")?;
            if !status.success() {
                bail!("chown -R postgres {} failed", dir.display());
            }
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", bin]);
            c
        } else {
            Command::new(bin)
        };
        let child = cmd
            .arg(&ini_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pgbouncer")?;
        let bouncer = PgBouncer { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(bouncer.dir.join("pgbouncer.log"));
                bail!(
                    "pgbouncer did not start listening: {}",
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(bouncer)
    }

    /// `pgbouncer -V`, e.g. `PgBouncer 1.18.0`.
    pub fn version() -> String {
        Command::new("pgbouncer")
            .arg("-V")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| "PgBouncer (version unknown)".into())
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM: runuser passes it on to PgBouncer, which stops at once.
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
