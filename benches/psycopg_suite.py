#!/usr/bin/env python3
"""psycopg 3's own test suite directly, through Orgwall and through PgBouncer (issue 23).

Starts a throw-away PostgreSQL 15 (initdb into a temp dir, run as the `postgres` system user
when root, as the tests' harness does), then for each target starts the proxy in front of it,
runs the same selection of psycopg's suite with `--test-dsn` pointing at it, and prints the
table target -> passed/failed/errors/skipped plus, per pool mode, the tests that fail through
Orgwall but pass through PgBouncer (and the reverse).

    benches/psycopg_suite.py --psycopg-src DIR [--python PY] [--targets a,b] [-- pytest args]

DIR holds psycopg's `tests/` tree at the tag of the installed psycopg (`git archive 3.3.4
tests`); PY is a Python with that psycopg, pytest, anyio and pytest-timeout (default: the
running one). Targets: direct, orgwall-session, orgwall-transaction, pgbouncer-session,
pgbouncer-transaction (default: all; the PgBouncer ones need `pgbouncer` on PATH). Orgwall is
`target/debug/orgwall` unless `--orgwall BIN`. Pytest arguments after `--` replace the default
selection (see DEFAULT_SELECTION). `--reuse DIR` takes the reports of targets not run from
an earlier `--keep` folder (PgBouncer's and the direct ones do not change with Orgwall).

Exit status: 0 when, in each pool mode run with both proxies, every test Orgwall fails also
fails through PgBouncer or is listed in `--refusals FILE` (default tests/psycopg/refusals.txt:
`<mode> <test id>  # reason` lines), else 1. With `--gate` a mode without a PgBouncer run is
compared with the direct run instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "psycopg_test"
USER = "postgres"
PASSWORD = "fidelity-pw"
TARGETS = [
    "direct",
    "pgbouncer-session",
    "orgwall-session",
    "pgbouncer-transaction",
    "orgwall-transaction",
]
# psycopg's connection, cursor, COPY, pipeline, prepared, transaction, two-phase, notify,
# concurrency and error tests: the top-level modules. Left out: `pool/` (another package),
# `crdb/` (CockroachDB), `types/` and `pq/` (value adaptation and libpq wrappers, minutes of
# client CPU, nothing a proxy changes), tests marked slow or timing (timing ones fail at
# random on a loaded machine, whatever the target).
DEFAULT_SELECTION = [
    "tests", "--ignore=tests/pool", "--ignore=tests/crdb", "--ignore=tests/types",
    "--ignore=tests/pq", "-m", "not slow and not timing",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, secs: float = 30) -> None:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {port} within {secs}s")


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: run them as `postgres` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def pg_bindir() -> Path:
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise SystemExit("PostgreSQL server binaries not found: apt-get install -y postgresql")
    return found[-1].parent


class Cluster:
    """A private PostgreSQL with what psycopg's suite needs (prepared transactions on)."""

    def __init__(self, work: Path):
        self.dir = work / "pg"
        self.dir.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(work, pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        bindir = pg_bindir()
        data = self.dir / "data"
        subprocess.run(
            as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
                         "--encoding=UTF8", "--locale=C"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        conf = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.dir}'\nmax_connections = 300\n"
            "max_prepared_transactions = 20\nfsync = off\nsynchronous_commit = off\n"
            "full_page_writes = off\n"
        )
        with open(data / "postgresql.conf", "a") as f:
            f.write(conf)
        self.proc = subprocess.Popen(
            as_postgres([str(bindir / "postgres"), "-D", str(data)]),
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "w"),
        )
        wait_port(self.port, self.proc, "postgres")
        for _ in range(50):
            r = subprocess.run(
                [shutil.which("psql") or str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
                 "-d", "postgres", "-Atc", f"CREATE DATABASE {DB}"],
                capture_output=True, text=True,
            )
            if r.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"CREATE DATABASE failed: {r.stderr}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def dsn(port: int) -> str:
    return (f"host=127.0.0.1 port={port} user={USER} password={PASSWORD} dbname={DB} "
            "sslmode=disable connect_timeout=10")


@contextlib.contextmanager
def orgwall(binary: Path, pg: Cluster, mode: str, work: Path):
    port = free_port()
    cfg = work / f"orgwall-{mode}.toml"
    cfg.write_text(
        f'listen = "127.0.0.1:{port}"\nshutdown_timeout_secs = 2\n'
        "idle_in_transaction_timeout_secs = 0\nmax_client_connections = 250\n"
        f'[upstream]\nurl = "postgres://{USER}@127.0.0.1:{pg.port}/{DB}"\n'
        f'pool_size = 40\npool_mode = "{mode}"\ncheckout_timeout_secs = 20\n'
        "[tenancy]\nenforce_in_postgres = false\n"
        f'[[users]]\nname = "{USER}"\npassword = "{PASSWORD}"\norg_id = "org_ops"\n'
        'role = "admin"\n'
    )
    log = open(work / f"orgwall-{mode}.log", "w")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    proc = subprocess.Popen([str(binary), "serve", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        wait_port(port, proc, "orgwall")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def pgbouncer(pg: Cluster, mode: str, work: Path):
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(exe).exists():
        raise SystemExit("pgbouncer not found: apt-get install -y pgbouncer")
    port = free_port()
    d = work / f"pgbouncer-{mode}"
    d.mkdir()
    (d / "users.txt").write_text(f'"{USER}" "{PASSWORD}"\n')
    ini = d / "pgbouncer.ini"
    ini.write_text(
        f"[databases]\n{DB} = host=127.0.0.1 port={pg.port} dbname={DB} user={USER}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = plain\nauth_file = {d / 'users.txt'}\npool_mode = {mode}\n"
        "max_client_conn = 250\ndefault_pool_size = 40\n"
        f"logfile = {d / 'log'}\npidfile = {d / 'pid'}\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (d, d / "users.txt", ini):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    proc = subprocess.Popen(as_postgres([exe, str(ini)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "pgbouncer")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def run_suite(python: str, src: Path, port: int, name: str, work: Path, args: argparse.Namespace,
              selection: list[str]) -> dict[str, str]:
    """Runs the selection against `port`; test id -> passed | failed | error | skipped."""
    junit = work / f"{name}.xml"
    cmd = [python, "-m", "pytest", *selection, "-q", "-p", "no:randomly",
           "-o", f"cache_dir={work / ('cache-' + name)}", f"--timeout={args.timeout}",
           f"--test-dsn={dsn(port)}", f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    out = open(work / f"{name}.out", "w")
    started = time.monotonic()
    subprocess.run(cmd, cwd=src, stdout=out, stderr=subprocess.STDOUT, env=dict(
        os.environ, PYTHONDONTWRITEBYTECODE="1"))
    print(f"# {name}: {time.monotonic() - started:.0f}s", file=sys.stderr)
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report for {name}: see {work / (name + '.out')}")
    return read_report(junit)


def read_report(junit: Path) -> dict[str, str]:
    """A JUnit report: test id -> passed | failed | error | skipped."""
    results: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test = node_id(case.get("file", ""), case.get("classname", ""), case.get("name", ""))
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            results[test] = "failed"
        elif "error" in kinds:
            results[test] = "error" if test not in results else results[test]
        elif "skipped" in kinds:
            results[test] = "skipped"
        else:
            results.setdefault(test, "passed")
    return results


def node_id(file: str, classname: str, name: str) -> str:
    """pytest's id (`tests/test_tpc.py::TestTPC::test_x[p]`) from a JUnit (xunit1) testcase."""
    module = file[:-3].replace("/", ".") if file.endswith(".py") else classname
    rest = classname[len(module) + 1:] if classname.startswith(module + ".") else ""
    return "::".join(p for p in (file or classname, *rest.split("."), name) if p)


def load_refusals(path: Path | None) -> dict[str, list[str]]:
    """`<mode> <test id>  # reason` lines: mode (session, transaction) -> ids; `any` is both."""
    out: dict[str, list[str]] = {"session": [], "transaction": []}
    if path is None:
        return out
    for line in path.read_text().splitlines():
        mode, _, test = line.split("#", 1)[0].strip().partition(" ")
        for m in out if mode == "any" else [mode] if mode in out else []:
            out[m].append(test.strip())
    return out


def refused(test: str, refusals: list[str]) -> bool:
    """An id without parameters covers all its parametrised cases, a module all its tests."""
    return any(
        test == r
        or (test.startswith(r) and test[len(r):].startswith("["))
        or (r.endswith(".py") and test.startswith(r + "::"))
        for r in refusals
    )


def bad(outcome: str | None) -> bool:
    return outcome in ("failed", "error")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--psycopg-src", type=Path, required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--orgwall", type=Path, default=ROOT / "target/debug/orgwall")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per test")
    ap.add_argument("--refusals", type=Path, default=ROOT / "tests/psycopg/refusals.txt",
                    help="documented refusals (default tests/psycopg/refusals.txt)")
    ap.add_argument("--gate", action="store_true",
                    help="without PgBouncer: Orgwall's failures must fail directly or be refusals")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, reports)")
    ap.add_argument("--reuse", type=Path, help="a kept folder: reports of targets not run now")
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets: {sorted(unknown)}")
    selection = args.pytest_args or DEFAULT_SELECTION
    refusals = load_refusals(args.refusals)

    results: dict[str, dict[str, str]] = {}
    if args.reuse:
        for target in TARGETS:
            if target not in targets and (args.reuse / f"{target}.xml").exists():
                results[target] = read_report(args.reuse / f"{target}.xml")
    work = Path(tempfile.mkdtemp(prefix="psycopg-suite-"))
    os.chmod(work, 0o755)
    pg = Cluster(work) if targets else None
    try:
        for target in targets:
            kind, _, mode = target.partition("-")
            if kind == "direct":
                ctx = contextlib.nullcontext(pg.port)
            elif kind == "orgwall":
                ctx = orgwall(args.orgwall, pg, mode, work)
            else:
                ctx = pgbouncer(pg, mode, work)
            with ctx as port:
                results[target] = run_suite(args.python, args.psycopg_src, port, target, work,
                                            args, selection)
    finally:
        if pg is not None:
            pg.stop()
        if args.keep:
            print(f"# logs and reports kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print("| target | passed | failed | errors | skipped |")
    print("|---|---|---|---|---|")
    for target in sorted(results, key=TARGETS.index):
        res = results[target]
        counts = {k: sum(1 for v in res.values() if v == k)
                  for k in ("passed", "failed", "error", "skipped")}
        print(f"| {target} | {counts['passed']} | {counts['failed']} | {counts['error']} "
              f"| {counts['skipped']} |")

    ok = True
    for mode in ("session", "transaction"):
        ours, theirs = results.get(f"orgwall-{mode}"), results.get(f"pgbouncer-{mode}")
        if ours is None:
            continue
        reference = theirs if theirs is not None else (results.get("direct") if args.gate else None)
        if reference is None:
            continue
        ref_name = f"pgbouncer-{mode}" if theirs is not None else "direct"
        worse = sorted(t for t, v in ours.items() if bad(v) and not bad(reference.get(t)))
        documented = [t for t in worse if refused(t, refusals[mode])]
        worse = [t for t in worse if t not in documented]
        better = sorted(t for t, v in reference.items() if bad(v) and not bad(ours.get(t)))
        print(f"\n## {mode} pooling: failing through Orgwall, not through {ref_name}: "
              f"{len(worse)} (+{len(documented)} documented)")
        for t in worse:
            print(f"- {t}")
        for t in documented:
            print(f"- {t} (documented, tests/psycopg/refusals.txt)")
        print(f"\n## {mode} pooling: failing through {ref_name}, not through Orgwall: {len(better)}")
        for t in better:
            print(f"- {t}")
        ok = ok and not worse
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
