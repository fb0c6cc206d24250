"""Real MariaDB (or MySQL) for the test suite: find a running server or start a throwaway one.

``tests/conftest.py`` star-imports this module, which brings in the fixtures
``mariadb_server`` (session: where the server is) and ``mariadb_url`` (SQLAlchemy
URL of a fresh database per test, ``dsar_test_<random>``, dropped afterwards).

Which server, decided in ``pytest_collection_finish`` when a collected test needs one
(it uses ``mariadb_url`` or ``mariadb_server``, or is parametrised with the value
``"mariadb"``, as a fixture choosing the dialect by ``request.getfixturevalue`` is;
a run without such tests starts nothing), before any test runs:

* ``DSAR_TEST_MARIADB=host:port`` use that server (user root, password from
  ``MYSQL_PWD``, else none); exit (code 3) if it does not answer within ~3 s.
* ``DSAR_TEST_MARIADB=start``     always start a throwaway server.
* unset                           probe ``DSAR_TEST_MARIADB_PROBE`` (default
  ``127.0.0.1:3306``) as root; if nothing answers, start a throwaway server.

The throwaway server lives in a scratch dir (``dsar-mariadb-*`` in the temp dir,
outside pytest's 0700 basetemp): ``mariadb-install-db`` writes its data dir, then
``mariadbd`` runs as our child on a free loopback port with its socket in the
scratch dir and ``--skip-grant-tables`` (root, no password). It runs as root with
``--user=root`` when we are root (it refuses root otherwise). It is stopped and
removed when the session ends, at exit, or on SIGTERM. If it cannot start, pytest
exits with code 3 saying what to install: tests needing MariaDB are never skipped.

This module defines only the hook ``pytest_collection_finish``:
``tests/support/postgres.py`` owns ``pytest_configure`` and both are star-imported
into one conftest. (Exiting from a fixture instead would break pytest's own
teardown of fixtures set up before it.) Its line in the report header goes through
``servers.add_report_line``; the helpers shared with ``postgres.py`` and ``redis.py``
are in ``tests/support/servers.py``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import servers

__all__ = ["MariaDbServer", "mariadb_server", "mariadb_url", "pytest_collection_finish"]

ENV_TARGET = "DSAR_TEST_MARIADB"
ENV_PROBE = "DSAR_TEST_MARIADB_PROBE"
DEFAULT_PROBE = "127.0.0.1:3306"
START_TIMEOUT_S = 60.0
INSTALL_HINT = (
    "install MariaDB's server: `apt-get install -y mariadb-server` on Debian (or run "
    "scripts/ensure-test-deps.sh), or point DSAR_TEST_MARIADB=host:port at a server "
    "where root may connect (password in MYSQL_PWD)"
)


@dataclasses.dataclass
class MariaDbServer:
    """Where the tests' MariaDB is, and whether the tests own it."""

    host: str
    port: int
    user: str = "root"
    password: str = ""
    throwaway: bool = False
    scratch: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    version: str = ""

    @property
    def label(self) -> str:
        how = servers.throwaway_or_running(self.throwaway)
        return f"{self.host}:{self.port} {self.version} ({how})"

    def url(self, database: str = "") -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"mysql+pymysql://{auth}@{self.host}:{self.port}/{database}?charset=utf8mb4"

    def connect(self, **kwargs: Any) -> Any:
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, autocommit=True, **kwargs)

    def stop(self) -> None:
        """Stop a throwaway server and remove its scratch dir; idempotent."""
        proc, self.process = self.process, None
        # SIGTERM: mariadbd shuts down cleanly
        servers.stop_process(proc, signal.SIGTERM, timeout_s=30)
        scratch, self.scratch = self.scratch, None
        if self.throwaway and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


_lazy: servers.Lazy[MariaDbServer] = servers.Lazy("mariadb", ENV_TARGET, lambda: _choose_server(),
                                               lambda: _require_driver())

# --------------------------------------------------------------------------- hooks


def pytest_collection_finish(session: pytest.Session) -> None:
    _lazy.decide(any(_needs_mariadb(item) for item in session.items))


def _needs_mariadb(item: pytest.Item) -> bool:
    if {"mariadb_url", "mariadb_server"} & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "mariadb" in callspec.params.values()


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    """The server the tests use; a throwaway one is stopped when the session ends."""
    yield from _lazy.session()


@pytest.fixture
def mariadb_url(mariadb_server: MariaDbServer) -> Iterator[str]:
    """SQLAlchemy URL of this test's own fresh MariaDB database (dropped afterwards)."""
    name = f"dsar_test_{os.getpid()}_{secrets.token_hex(4)}"
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    yield mariadb_server.url(name)
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


# ------------------------------------------------------------------- choose server


def _require_driver() -> None:
    try:
        import pymysql  # noqa: F401
    except ImportError:
        servers.exit_tests("PyMySQL is missing: pip install -e '.[test]' (or 'PyMySQL>=1.1,<2')")


def _choose_server() -> MariaDbServer:
    password = os.environ.get("MYSQL_PWD", "")
    return servers.choose_server(
        ENV_TARGET, ENV_PROBE, DEFAULT_PROBE,
        at=lambda host, port: MariaDbServer(host, port, password=password),
        probe=_probe, start=_start_throwaway, no_answer="no MariaDB answered as root")


def _probe(server: MariaDbServer, deadline_s: float, retry: bool = True) -> str | None:
    """None if `SELECT VERSION()` works as root before the deadline, else the error.
    With retry=False one attempt is made: a refused connection answers at once."""
    import pymysql

    def attempt(seconds_left: float) -> None:
        left = max(1, int(seconds_left + 0.999))
        with socket.create_connection((server.host, server.port), timeout=min(1.0, left)):
            pass
        conn = server.connect(connect_timeout=left)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                server.version = str(cur.fetchone()[0])
        finally:
            conn.close()

    return servers.probe_until(attempt, deadline_s, retry, (OSError, pymysql.Error))


# --------------------------------------------------------------- throwaway server


def _find_binaries() -> dict[str, str] | None:
    found = {}
    for name, alternatives in (("install_db", ("mariadb-install-db", "mysql_install_db")),
                               ("server", ("mariadbd", "mysqld"))):
        for alt in alternatives:
            path = shutil.which(alt) or shutil.which(alt, path="/usr/sbin:/usr/bin")
            if path:
                found[name] = path
                break
    return found if len(found) == 2 else None


def _start_throwaway() -> MariaDbServer:
    bins = _find_binaries()
    if bins is None:
        servers.exit_tests("no MariaDB answers and no server binaries (mariadb-install-db, "
                           f"mariadbd) were found: {INSTALL_HINT}")
    scratch = servers.new_scratch("dsar-mariadb-", "mariadbd.pid", tempfile.gettempdir())
    server = MariaDbServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    servers.register_cleanup(server)

    def start() -> None:
        _install_db(bins["install_db"], scratch)
        _start_mariadbd(server, bins["server"])

    servers.start_or_exit(server, start, f"MariaDB ({bins['server']})",
                          scratch / "mariadbd.log", INSTALL_HINT)
    return server


def _as_root() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


def _install_db(install_db: str, scratch: Path) -> None:
    cmd = [install_db, "--no-defaults", f"--datadir={scratch / 'data'}", *_as_root(),
           "--auth-root-authentication-method=normal", "--skip-test-db"]
    result = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, timeout=180,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(install_db).name} exited {result.returncode}:\n"
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}")


def _start_mariadbd(server: MariaDbServer, mariadbd: str) -> None:
    """Run mariadbd as our child (so we reap it) and wait until it answers."""
    assert server.scratch is not None
    scratch = server.scratch
    for _attempt in range(3):  # the free port can be taken between probe and bind
        server.port = servers.free_port()
        cmd = [mariadbd, "--no-defaults", f"--datadir={scratch / 'data'}", *_as_root(),
               "--bind-address=127.0.0.1", f"--port={server.port}",
               f"--socket={scratch / 'mariadbd.sock'}", f"--pid-file={scratch / 'mariadbd.pid'}",
               f"--log-error={scratch / 'mariadbd.log'}", "--skip-grant-tables",
               "--skip-log-bin", "--innodb-buffer-pool-size=64M",
               "--innodb-flush-log-at-trx-commit=0", "--skip-innodb-doublewrite"]
        server.process = subprocess.Popen(cmd, cwd=scratch, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if servers.started(server, lambda: _probe(server, deadline_s=0.5) is None,
                           START_TIMEOUT_S):
            return
    raise RuntimeError(f"mariadbd did not accept connections within {START_TIMEOUT_S:.0f} s")

