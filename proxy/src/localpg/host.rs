//! The host side of a local cluster: finding the PostgreSQL binaries, running commands (as the
//! `postgres` user when root), psql, free ports.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Bins {
    pub(super) initdb: PathBuf,
    pub(super) pg_ctl: PathBuf,
    pub(super) psql: PathBuf,
}

#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) runuser: Option<PathBuf>,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, LocalPgError> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("cannot pick a free port"))?;
    Ok(l.local_addr()
        .map_err(io_err("cannot pick a free port"))?
        .port())
}

pub(super) fn read_from(path: &Path, offset: u64) -> String {
    let mut s = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f
            .seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_to_end(&mut s));
    }
    String::from_utf8_lossy(&s).into_owned()
}

pub(super) fn run(mut cmd: Command) -> Result<String, LocalPgError> {
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
pub(super) fn psql_output(mut cmd: Command, db: &str, sql: &str) -> Result<String, LocalPgError> {
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
pub(super) fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub(super) fn find_bins() -> Result<Bins, LocalPgError> {
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

pub(super) fn run_as() -> Result<Option<RunAs>, LocalPgError> {
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

pub(super) fn lookup_user(name: &str) -> Option<(u32, u32)> {
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
