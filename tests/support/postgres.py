"""Real PostgreSQL for the test suite: find a running server or start a throwaway one.

``tests/conftest.py`` star-imports this module, which brings in:

* the hooks ``pytest_configure`` / ``pytest_unconfigure`` (a conftest that needs its
  own ``pytest_configure`` must call this one from it) and ``pytest_report_header``,
  which is ``tests/support/servers.py``'s: one line per server (PostgreSQL, MariaDB,
  Redis), re-exported here so that it is defined once;
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
in ``pytest_unconfigure`` (or at exit, or on SIGTERM: ``servers.register_cleanup``).
If it cannot start, pytest exits with code 3 saying what to install: tests needing
PostgreSQL are never skipped. The helpers shared with ``mariadb.py`` and ``redis.py``
are in ``tests/support/servers.py``.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories

from tests.support import servers
from tests.support.servers import pytest_report_header

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
        return f"{self.host}:{self.port} ({servers.throwaway_or_running(self.throwaway)})"

    def stop(self) -> None:
        """Stop a throwaway server and remove its scratch dir; idempotent."""
        self.stop_process()
        scratch, self.scratch = self.scratch, None
        if self.throwaway and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def stop_process(self) -> None:
        proc, self.process = self.process, None
        # SIGQUIT: immediate shutdown, nothing to keep
        servers.stop_process(proc, signal.SIGQUIT, timeout_s=15)


_server: PgServer | None = None
servers.add_report_line(lambda: f"postgresql: {_server.label if _server else 'not chosen'}")


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
    global _server
    server, _server = _server, None
    if server is not None and server.throwaway:
        servers.stop_server(server)


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
    return servers.choose_server(
        ENV_TARGET,
        ENV_PROBE,
        DEFAULT_PROBE,
        at=lambda host, port: PgServer(host, port, password=os.environ.get("PGPASSWORD")),
        probe=lambda server, deadline_s, retry: _probe(server.host, server.port, deadline_s, retry),
        start=_start_throwaway,
        no_answer=f"no PostgreSQL answered as user {PG_USER}",
    )


def _probe(host: str, port: int, deadline_s: float, retry: bool = True) -> str | None:
    """None if `SELECT 1` works as user postgres before the deadline, else the error.

    With retry=False one attempt is made: a refused connection answers at once.
    """

    def attempt(left: float) -> None:
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

    return servers.probe_until(attempt, deadline_s, retry, (OSError, psycopg.Error))


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


def _start_throwaway() -> PgServer:
    bins = _find_binaries()
    if bins is None:
        servers.exit_tests(
            "no running PostgreSQL and no server binaries (initdb, postgres) found under "
            f"/usr/lib/postgresql/*/bin or on PATH: {INSTALL_HINT}"
        )
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(PG_USER)
        except KeyError:
            servers.exit_tests(
                f"running as root but there is no '{PG_USER}' user to run PostgreSQL as "
                f"(it refuses root): {INSTALL_HINT}"
            )
    base = _scratch_base(owner is not None)
    scratch = servers.new_scratch("dsar-pg-", "data/postmaster.pid", base)
    server = PgServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    servers.register_cleanup(server)

    def start() -> None:
        scratch.chmod(0o755)
        if owner is not None:
            os.chown(scratch, owner.pw_uid, owner.pw_gid)
        _initdb(bins["initdb"], scratch, owner)
        _start_postgres(server, bins["postgres"], owner)

    servers.start_or_exit(
        server, start, f"PostgreSQL ({bins['postgres']})", scratch / "postgres.log", INSTALL_HINT
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
        server.port = servers.free_port()
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
        if servers.wait_until_answers(
            server.process,
            lambda: _probe(server.host, server.port, deadline_s=0.5) is None,
            START_TIMEOUT_S,
        ):
            return
        server.stop_process()
    raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s")

