"""Real PostgreSQL for the test suite: find a running server or start a throwaway one.

``tests/conftest.py`` star-imports this module, which brings in:

* the hooks ``pytest_configure`` / ``pytest_unconfigure`` (a conftest that needs its
  own ``pytest_configure`` must call this one from it) and ``pytest_report_header``,
  which is ``tests/support/servers.py``'s: one line per server (PostgreSQL, MariaDB,
  Redis), re-exported here so that it is defined once;
* fixtures ``pg_server`` (session: where the server is), ``postgresql_noproc`` and
  ``postgresql`` (pytest-postgresql: a fresh database per test), ``pg_url`` (SQLAlchemy
  URL of that database); ``migrated_pg`` (session: one app database, migrated once)
  and ``app_pg_url`` (its URL, the database put back as the migration left it: see
  ``MigratedPg``); ``database_url``, in ``tests/support/app.py``, is parametrised over
  sqlite and postgresql and uses ``pg_url`` or ``app_pg_url``;
* for outage tests, ``restartable_pg``: a fresh database on a private throwaway server
  (always its own, started once per session on first use, whatever ``DSAR_TEST_PG``
  says) with ``url``, ``port``, ``stop()`` and ``start()`` (same port; running again
  at the start of every test), ``freeze()``/``thaw()`` (SIGSTOP/SIGCONT: connecting
  hangs); ``restartable_pg_server`` is its session fixture.

Which server, decided once in ``pytest_configure`` before any fixture runs (under
pytest-xdist, by the controller: its workers are handed ``DSAR_TEST_PG=host:port``, so
one throwaway server serves the run and the controller stops it):

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
import itertools
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql import factories

from tests.support import servers
from tests.support.servers import pytest_report_header

__all__ = [
    "PgServer",
    "RestartablePg",
    "RestartablePgDatabase",
    "MigratedPg",
    "app_pg_url",
    "migrated_pg",
    "pg_server",
    "pg_url",
    "postgresql",
    "postgresql_noproc",
    "pytest_configure",
    "pytest_report_header",
    "pytest_unconfigure",
    "restartable_pg",
    "restartable_pg_server",
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
    def log(self) -> Path:
        assert self.scratch is not None
        return self.scratch / "postgres.log"

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
    if _distributes(config):
        # pytest-xdist's workers start after this, with this environment: they use the
        # server chosen here (one throwaway server for the run, stopped by this process)
        os.environ[ENV_TARGET] = f"{_server.host}:{_server.port}"
    # pytest-postgresql reads `getoption(name) or getini(name)`: setting the options
    # here points its noproc fixture at our server.
    opt.postgresql_host = _server.host
    opt.postgresql_port = str(_server.port)
    opt.postgresql_user = _server.user
    opt.postgresql_password = _server.password
    # One name per pytest process, so two runs against one shared server don't collide.
    opt.postgresql_dbname = f"dsar_test_{os.getpid()}"


def _distributes(config: pytest.Config) -> bool:
    """Whether this process is pytest-xdist's controller, about to start workers."""
    return not hasattr(config, "workerinput") and bool(
        getattr(config.option, "numprocesses", None))


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


def _url(conn: psycopg.Connection) -> str:
    info = conn.info
    auth = info.user if not info.password else f"{info.user}:{info.password}"
    return f"postgresql+psycopg://{auth}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture
def pg_url(postgresql: psycopg.Connection) -> str:
    """SQLAlchemy URL of this test's own fresh PostgreSQL database."""
    return _url(postgresql)


# ------------------------------------------------------------ the app database


#: the schema as the catalog has it: every relation (table, index, sequence, view) in
#: every schema but the system's, with its columns
_CATALOG = """
    SELECT n.nspname, c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod),
           a.attnotnull
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1, 2, a.attnum
"""


class MigratedPg:
    """The session's app database on the tests' server: migrated once, then put
    back as it was just after the migration (:meth:`reset`) for each test using it.

    Creating a database (empty or from a template) costs 0.1-0.4 s on a server
    that syncs to disk, more than most tests; deleting a test's few rows costs
    milliseconds. :meth:`reset` ends every other connection to it first (a test's
    leftovers cannot reach the next one), and makes the database again from
    scratch when a test changed its schema.
    """

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.dbname = f"dsar_app_{os.getpid()}"
        self._create()

    @property
    def url(self) -> str:
        server = self.server
        auth = server.user if not server.password else f"{server.user}:{server.password}"
        return f"postgresql+psycopg://{auth}@{server.host}:{server.port}/{self.dbname}"

    def connect(self, dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
        server = self.server
        return psycopg.connect(host=server.host, port=server.port, user=server.user,
                               password=server.password, dbname=dbname or self.dbname,
                               autocommit=autocommit, connect_timeout=10)

    def reset(self) -> None:
        """Back to the state just after the migration: the migration's own rows,
        sequences at their start, nobody else connected."""
        with self.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                         "AND backend_type = 'client backend'")
            try:
                unchanged = self._catalog(conn) == self._migrated
            except psycopg.Error:  # e.g. no alembic_version any more
                unchanged = False
                conn.rollback()
            if unchanged:
                self._restore(conn)
                return
        self._create()  # a test changed the schema: made again from scratch

    def _restore(self, conn: psycopg.Connection) -> None:
        for table in self._tables:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        for table, (columns, rows) in self._rows.items():
            conn.cursor().executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns))), rows)
        conn.execute("SELECT setval(format('%I.%I', schemaname, sequencename), start_value, "
                     "false) FROM pg_sequences")

    def drop(self) -> None:
        with self.connect("postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    def _create(self) -> None:
        from sqlalchemy import MetaData

        from dsar import migrate
        from dsar.database import make_engine

        self.drop()
        with self.connect("postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.dbname}"')
            # as on the throwaway server: a commit does not wait for the disk
            admin.execute(f'ALTER DATABASE "{self.dbname}" SET synchronous_commit = off')
        engine = make_engine(self.url)
        try:
            migrate.upgrade(engine)
            schema = MetaData()
            schema.reflect(engine)
        finally:
            engine.dispose()
        #: every table, those referring to others first (the order to delete in)
        self._tables = [t.name for t in reversed(schema.sorted_tables)
                        if t.name != "alembic_version"]
        self._rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        with self.connect() as conn:
            self._migrated = self._catalog(conn)
            for table in self._tables:
                cursor = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
                rows = cursor.fetchall()
                if rows:
                    self._rows[table] = ([c.name for c in cursor.description or []], rows)

    @staticmethod
    def _catalog(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        return [*conn.execute(_CATALOG).fetchall(),
                *conn.execute("SELECT version_num FROM alembic_version").fetchall()]


@pytest.fixture(scope="session")
def migrated_pg(pg_server: PgServer) -> Iterator[MigratedPg]:
    """The session's app database, migrated (made on first use, dropped at the end)."""
    database = MigratedPg(pg_server)
    yield database
    database.drop()


@pytest.fixture
def app_pg_url(migrated_pg: MigratedPg) -> str:
    """SQLAlchemy URL of the session's app database, just as the migration left it."""
    migrated_pg.reset()
    return migrated_pg.url


# ------------------------------------------------------- restartable (outage tests)


class RestartablePg:
    """A private throwaway PostgreSQL that tests may stop and start again.

    Always its own server (never the shared one), on one port for its whole life, so
    a client configured before an outage finds it again afterwards. ``stop()`` is a
    fast shutdown (open connections are cut, the data dir is kept); ``start()`` waits
    until it answers, within START_TIMEOUT_S, or raises RuntimeError.
    """

    def __init__(self) -> None:
        self._frozen = False
        self.server, self._bins, self._owner = _new_throwaway()
        servers.start_or_exit(
            self.server,
            lambda: _init_and_start(self.server, self._bins, self._owner),
            f"restartable PostgreSQL ({self._bins['postgres']})",
            self.server.log,
            INSTALL_HINT,
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def is_running(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None

    def stop(self) -> None:
        """Stop the postmaster (SIGINT: fast shutdown), keep the data dir."""
        self.thaw()
        proc, self.server.process = self.server.process, None
        servers.stop_process(proc, signal.SIGINT, timeout_s=15)

    def freeze(self) -> None:
        """SIGSTOP the postmaster: new connections hang (the kernel still accepts
        them), as behind a dead network link; open sessions keep working."""
        if self.is_running and not self._frozen:
            assert self.server.process is not None
            self.server.process.send_signal(signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        """SIGCONT a frozen postmaster (no-op otherwise)."""
        if self._frozen:
            if self.is_running:
                assert self.server.process is not None
                self.server.process.send_signal(signal.SIGCONT)
            self._frozen = False

    def start(self) -> None:
        """Start it again on the same port (a frozen one is thawed; no-op if it
        runs); raise if it does not answer in time."""
        self.thaw()
        if self.is_running:
            return
        if not _run_postmaster(self.server, self._bins["postgres"], self._owner):
            tail = self.server.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"restartable PostgreSQL did not answer again on port {self.port} "
                f"within {START_TIMEOUT_S:.0f} s:\n{tail}"
            )

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to its ``postgres`` database."""
        return psycopg.connect(
            host=self.server.host, port=self.port, user=PG_USER, dbname="postgres",
            autocommit=True, connect_timeout=10,
        )


@dataclasses.dataclass
class RestartablePgDatabase:
    """What ``restartable_pg`` gives a test: its own database on the restartable server."""

    server: RestartablePg
    dbname: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{self.dbname}"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def freeze(self) -> None:
        self.server.freeze()

    def thaw(self) -> None:
        self.server.thaw()


_restartable_dbs = itertools.count(1)


@pytest.fixture(scope="session")
def restartable_pg_server() -> Iterator[RestartablePg]:
    """The session's restartable PostgreSQL, started on first use."""
    server = RestartablePg()
    yield server
    servers.stop_server(server.server)


@pytest.fixture
def restartable_pg(restartable_pg_server: RestartablePg) -> Iterator[RestartablePgDatabase]:
    """A fresh database on a running restartable PostgreSQL: ``url``, ``port``,
    ``stop()``, ``start()``, ``freeze()``, ``thaw()``. The server is running (and
    thawed) when the test starts, and started again (if the test left it stopped)
    before the database is dropped."""
    server = restartable_pg_server
    server.start()
    dbname = f"dsar_outage_{os.getpid()}_{next(_restartable_dbs)}"
    with server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    yield RestartablePgDatabase(server, dbname)
    server.start()
    with server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


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
    server, bins, owner = _new_throwaway()
    servers.start_or_exit(
        server,
        lambda: _init_and_start(server, bins, owner),
        f"PostgreSQL ({bins['postgres']})",
        server.log,
        INSTALL_HINT,
    )
    return server


def _new_throwaway() -> tuple[PgServer, dict[str, str], pwd.struct_passwd | None]:
    """A not yet started throwaway server in a fresh scratch dir (registered for
    cleanup), its binaries, and the user to run them as (None: ourselves)."""
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
    return server, bins, owner


def _init_and_start(
    server: PgServer, bins: dict[str, str], owner: pwd.struct_passwd | None
) -> None:
    assert server.scratch is not None
    server.scratch.chmod(0o755)
    if owner is not None:
        os.chown(server.scratch, owner.pw_uid, owner.pw_gid)
    _initdb(bins["initdb"], server.scratch, owner)
    _start_postgres(server, bins["postgres"], owner)


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
    """Start the postmaster on a free port and wait until it answers."""
    for _attempt in range(3):  # the free port can be taken between probe and bind
        server.port = servers.free_port()
        if _run_postmaster(server, postgres, owner):
            return
    raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s")


def _run_postmaster(server: PgServer, postgres: str, owner: pwd.struct_passwd | None) -> bool:
    """Run the postmaster on ``server.port`` as our child (so we reap it); True once it
    answers, False (and stopped) if it exits or does not answer within START_TIMEOUT_S."""
    assert server.scratch is not None
    scratch = server.scratch
    cmd = [postgres, "-D", str(scratch / "data"), "-p", str(server.port)]
    for setting in (
        "listen_addresses=127.0.0.1",
        f"unix_socket_directories={scratch}",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
    ):
        cmd += ["-c", setting]
    with open(server.log, "ab") as log:
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
        return True
    server.stop_process()
    return False
