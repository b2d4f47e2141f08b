//! Cluster lifecycle steps behind `LocalPostgres`: directories, initdb, configuration, boot,
//! pg_ctl, the watcher process.

use super::*;

impl LocalPostgres {
    pub(super) fn prepare_dirs(&self) -> Result<(), LocalPgError> {
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

    pub(super) fn initdb(&self) -> Result<(), LocalPgError> {
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
    pub(super) fn boot(&mut self, port: Option<u16>, fresh: bool) -> Result<(), LocalPgError> {
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
    pub(super) fn reset_password_over_socket(&self) -> Result<(), LocalPgError> {
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
    pub(super) fn psql_cmd(&self, host: &std::ffi::OsStr, db: &str) -> Command {
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

    pub(super) fn write_conf(&self) -> Result<(), LocalPgError> {
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
    pub(super) fn pg_ctl(&self, args: &[&str]) -> Result<String, LocalPgError> {
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
    pub(super) fn spawn_watcher(&self) -> Option<Child> {
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
    pub(super) fn server_cmd(&self, program: &Path) -> Command {
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

    pub(super) fn start_error(&self, why: String, log_from: u64) -> LocalPgError {
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
