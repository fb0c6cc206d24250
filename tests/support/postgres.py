"""Real PostgreSQL for the test suite: find a running server or start a throwaway one.

``tests/conftest.py`` star-imports this module, which brings in:

* the hooks ``pytest_configure`` / ``pytest_unconfigure`` / ``pytest_report_header``
  (a conftest that needs its own ``pytest_configure`` must call this one from it);
* fixtures ``pg_server`` (session: where the server is), ``postgresql_noproc`` and
  ``postgresql`` (pytest-postgresql: a fresh database per test), ``pg_url`` (SQLAlchemy
  URL of that database) and ``database_url`` (parametrised over sqlite and postgresql).

Which server, decided once in ``pytest_configure`` before any fixture runs:

* ``DSAR_TEST_PG=host:port`` use that server; exit (code 3) if it does not answer
  within ~3 s.
* ``DSAR_TEST_PG=start``     always start a throwaway server.
* unset                      probe ``DSAR_TEST_PG_PROBE`` (default ``127.0.0.1:5432``)
  as user ``postgres``; if it does not answer in ~2 s, start a throwaway server.

The throwaway server lives in a scratch dir (``dsar-pg-*`` in the temp dir, outside
pytest's 0700 basetemp), runs as ``postgres`` when we are root (PostgreSQL refuses
root), listens on a free loopback port with trust auth, and is stopped and removed
in ``pytest_unconfigure``. If it cannot start, pytest exits with code 3 saying what
to install: tests needing PostgreSQL are never skipped.
"""

from __future__ import annotations

import atexit
import dataclasses
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories

__all__ = [
    "PgServer",
    "database_url",
    "pg_server",
    "pg_url",
    "postgresql",
    "postgresql_noproc",
    "pytest_configure",
    "pytest_report_header",
    "pytest_unconfigure",
]

ENV_TARGET = "DSAR_TEST_PG"
ENV_PROBE = "DSAR_TEST_PG_PROBE"
DEFAULT_PROBE = "127.0.0.1:5432"
PG_USER = "postgres"
START_TIMEOUT_S = 30.0
INSTALL_HINT = (
    "install PostgreSQL's server binaries: `apt-get install -y postgresql` on Debian "
    "(or run scripts/ensure-test-deps.sh), or point DSAR_TEST_PG=host:port at a "
    "server with trust auth for user postgres"
)


@dataclasses.dataclass
class PgServer:
    """Where the tests' PostgreSQL is, and whether the tests own it."""

    host: str
    port: int
    user: str = PG_USER
    password: str | None = None
    throwaway: bool = False
    scratch: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        how = "throwaway, started by the tests" if self.throwaway else "running"
        return f"{self.host}:{self.port} ({how})"

    def stop(self) -> None:
        """Stop a throwaway server and remove its scratch dir; idempotent."""
        self.stop_process()
        scratch, self.scratch = self.scratch, None
        if self.throwaway and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def stop_process(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: nothing to keep
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


_server: PgServer | None = None


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    global _server
    opt = config.option
    if getattr(opt, "help", False) or getattr(opt, "version", False) or _server is not None:
        return
    _server = _choose_server()
    # pytest-postgresql reads `getoption(name) or getini(name)`: setting the options
    # here points its noproc fixture at our server.
    opt.postgresql_host = _server.host
    opt.postgresql_port = str(_server.port)
    opt.postgresql_user = _server.user
    opt.postgresql_password = _server.password
    # One name per pytest process, so two runs against one shared server don't collide.
    opt.postgresql_dbname = f"dsar_test_{os.getpid()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    _shutdown()


def pytest_report_header(config: pytest.Config) -> str:
    return f"postgresql: {_server.label if _server else 'not chosen'}"


# ------------------------------------------------------------------------ fixtures

postgresql_noproc = factories.postgresql_noproc()
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """The server the tests use (chosen in pytest_configure)."""
    assert _server is not None, "tests.support.postgres.pytest_configure did not run"
    return _server


@pytest.fixture
def pg_url(postgresql: psycopg.Connection) -> str:
    """SQLAlchemy URL of this test's own fresh PostgreSQL database."""
    info = postgresql.info
    auth = info.user if not info.password else f"{info.user}:{info.password}"
    return f"postgresql+psycopg://{auth}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dsar.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


# ------------------------------------------------------------------- choose server


def _choose_server() -> PgServer:
    target = os.environ.get(ENV_TARGET, "").strip()
    if target == "start":
        return _start_throwaway()
    if target:
        host, port = _parse_hostport(target, ENV_TARGET)
        error = _probe(host, port, deadline_s=3.0)
        if error:
            pytest.exit(
                f"{ENV_TARGET}={target}: no PostgreSQL answered as user {PG_USER} "
                f"within 3 s ({error}). Unset it to use 127.0.0.1:5432 or a throwaway "
                f"server, or set {ENV_TARGET}=start.",
                returncode=3,
            )
        return PgServer(host, port, password=os.environ.get("PGPASSWORD"))
    probe = os.environ.get(ENV_PROBE, DEFAULT_PROBE)
    host, port = _parse_hostport(probe, ENV_PROBE)
    if _probe(host, port, deadline_s=2.0, retry=False) is None:
        return PgServer(host, port, password=os.environ.get("PGPASSWORD"))
    return _start_throwaway()


def _parse_hostport(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        pytest.exit(f"{name}={value!r}: expected host:port (or 'start')", returncode=3)
    return host, int(port)


def _probe(host: str, port: int, deadline_s: float, retry: bool = True) -> str | None:
    """None if `SELECT 1` works as user postgres before the deadline, else the error.

    With retry=False one attempt is made: a refused connection answers at once.
    """
    deadline = time.monotonic() + deadline_s
    error = "no attempt"
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.2, min(1.0, left))):
                pass
            with psycopg.connect(
                host=host,
                port=port,
                user=PG_USER,
                dbname="postgres",
                connect_timeout=max(1, int(left + 0.999)),
            ) as conn:
                conn.execute("SELECT 1")
            return None
        except (OSError, psycopg.Error) as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            error = f"{type(exc).__name__}: {first_line}"
        if not retry or time.monotonic() + 0.25 >= deadline:
            return error
        time.sleep(0.25)


# --------------------------------------------------------------- throwaway server


def _find_binaries() -> dict[str, str] | None:
    """initdb and postgres from the newest /usr/lib/postgresql/N/bin, else PATH."""

    def version(path: str) -> int:
        name = Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        bindir = Path(initdb).parent
        found = {n: str(bindir / n) for n in ("initdb", "postgres")}
        if all(os.access(p, os.X_OK) for p in found.values()):
            return found
    on_path = {n: shutil.which(n) for n in ("initdb", "postgres")}
    if all(on_path.values()):
        return {n: str(p) for n, p in on_path.items()}
    return None


def _as_user(owner: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that drop root to `owner` (PostgreSQL refuses to run as root)."""
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _scratch_base(as_root: bool) -> str:
    """A temp dir the postgres user can traverse (o+x on every component)."""
    base = tempfile.gettempdir()
    if not as_root:
        return base
    path = Path(base).resolve()
    for part in [path, *path.parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            return "/tmp"  # noqa: S108 - world-traversable by construction
    return base


def _remove_stale_scratch(base: str) -> None:
    """Remove dsar-pg-* dirs left by a killed run (old, and no live postmaster)."""
    for path in Path(base).glob("dsar-pg-*"):
        try:
            if time.time() - path.stat().st_mtime < 600:
                continue  # maybe another run starting right now
            pid_file = path / "data" / "postmaster.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), 0)
                continue  # its server still runs
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_throwaway() -> PgServer:
    bins = _find_binaries()
    if bins is None:
        pytest.exit(
            "no running PostgreSQL and no server binaries (initdb, postgres) found under "
            f"/usr/lib/postgresql/*/bin or on PATH: {INSTALL_HINT}",
            returncode=3,
        )
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(PG_USER)
        except KeyError:
            pytest.exit(
                f"running as root but there is no '{PG_USER}' user to run PostgreSQL as "
                f"(it refuses root): {INSTALL_HINT}",
                returncode=3,
            )
    base = _scratch_base(owner is not None)
    _remove_stale_scratch(base)
    scratch = Path(tempfile.mkdtemp(prefix="dsar-pg-", dir=base))
    server = PgServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    _register_cleanup(server)
    try:
        scratch.chmod(0o755)
        if owner is not None:
            os.chown(scratch, owner.pw_uid, owner.pw_gid)
        _initdb(bins["initdb"], scratch, owner)
        _start_postgres(server, bins["postgres"], owner)
    except Exception as exc:
        log = scratch / "postgres.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        pytest.exit(
            f"could not start a throwaway PostgreSQL ({bins['postgres']}): {exc}\n{tail}\n"
            f"Hint: {INSTALL_HINT}",
            returncode=3,
        )
    return server


def _initdb(initdb: str, scratch: Path, owner: pwd.struct_passwd | None) -> None:
    cmd = [initdb, "-D", str(scratch / "data"), "-A", "trust", "-U", PG_USER]
    cmd += ["-E", "UTF8", "--no-locale", "--no-sync"]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(
        cmd,
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **_as_user(owner),
    )
    if result.returncode != 0:
        raise RuntimeError(f"initdb exited {result.returncode}:\n{result.stdout}{result.stderr}")


def _start_postgres(server: PgServer, postgres: str, owner: pwd.struct_passwd | None) -> None:
    """Run the postmaster as our child (so we reap it) and wait until it answers."""
    assert server.scratch is not None
    scratch = server.scratch
    for _attempt in range(3):  # the free port can be taken between probe and bind
        server.port = _free_port()
        cmd = [postgres, "-D", str(scratch / "data"), "-p", str(server.port)]
        for setting in (
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={scratch}",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ):
            cmd += ["-c", setting]
        with open(scratch / "postgres.log", "ab") as log:
            server.process = subprocess.Popen(
                cmd,
                cwd=scratch,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                **_as_user(owner),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while server.process.poll() is None and time.monotonic() < deadline:
            if _probe(server.host, server.port, deadline_s=0.5) is None:
                return
        server.stop_process()
    raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s")


_owned: list[PgServer] = []


def _register_cleanup(server: PgServer) -> None:
    if not _owned:
        atexit.register(_shutdown)  # backup if pytest_unconfigure is never reached
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            # SIGTERM skips atexit and pytest_unconfigure: stop the server, then die as asked.
            _shutdown()
            signal.signal(signal.SIGTERM, previous if callable(previous) else signal.SIG_DFL)
            if callable(previous):
                previous(signum, frame)
            else:
                os.kill(os.getpid(), signal.SIGTERM)

        if previous in (signal.SIG_DFL, None) or callable(previous):
            signal.signal(signal.SIGTERM, on_sigterm)
    _owned.append(server)


def _shutdown() -> None:
    global _server
    _server = None
    while _owned:
        _owned.pop().stop()
