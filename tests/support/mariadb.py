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
teardown of fixtures set up before it.)
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
        how = "throwaway, started by the tests" if self.throwaway else "running"
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
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: mariadbd shuts down cleanly
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        scratch, self.scratch = self.scratch, None
        if self.throwaway and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


_server: MariaDbServer | None = None

# --------------------------------------------------------------------------- hooks


def pytest_collection_finish(session: pytest.Session) -> None:
    global _server
    if _server is None and any(_needs_mariadb(item) for item in session.items):
        _require_driver()
        _server = _choose_server()


def _needs_mariadb(item: pytest.Item) -> bool:
    if {"mariadb_url", "mariadb_server"} & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "mariadb" in callspec.params.values()


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    """The server the tests use; a throwaway one is stopped when the session ends."""
    global _server
    if _server is None:  # a test asked by getfixturevalue without saying so: decide now
        _require_driver()
        _server = _choose_server()
    yield _server
    server, _server = _server, None
    if server.throwaway:
        _shutdown()


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
        pytest.exit("PyMySQL is missing: pip install -e '.[test]' (or 'PyMySQL>=1.1,<2')",
                    returncode=3)


def _choose_server() -> MariaDbServer:
    target = os.environ.get(ENV_TARGET, "").strip()
    password = os.environ.get("MYSQL_PWD", "")
    if target == "start":
        return _start_throwaway()
    if target:
        host, port = _parse_hostport(target, ENV_TARGET)
        server = MariaDbServer(host, port, password=password)
        error = _probe(server, deadline_s=3.0)
        if error:
            pytest.exit(f"{ENV_TARGET}={target}: no MariaDB answered as root within 3 s "
                        f"({error}). Unset it to use {DEFAULT_PROBE} or a throwaway "
                        f"server, or set {ENV_TARGET}=start.", returncode=3)
        return server
    host, port = _parse_hostport(os.environ.get(ENV_PROBE, DEFAULT_PROBE), ENV_PROBE)
    server = MariaDbServer(host, port, password=password)
    if _probe(server, deadline_s=2.0, retry=False) is None:
        return server
    return _start_throwaway()


def _parse_hostport(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        pytest.exit(f"{name}={value!r}: expected host:port (or 'start')", returncode=3)
    return host, int(port)


def _probe(server: MariaDbServer, deadline_s: float, retry: bool = True) -> str | None:
    """None if `SELECT VERSION()` works as root before the deadline, else the error.
    With retry=False one attempt is made: a refused connection answers at once."""
    import pymysql

    deadline = time.monotonic() + deadline_s
    while True:
        left = max(1, int(deadline - time.monotonic() + 0.999))
        try:
            with socket.create_connection((server.host, server.port), timeout=min(1.0, left)):
                pass
            conn = server.connect(connect_timeout=left)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT VERSION()")
                    server.version = str(cur.fetchone()[0])
            finally:
                conn.close()
            return None
        except (OSError, pymysql.Error) as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            error = f"{type(exc).__name__}: {first_line}"
        if not retry or time.monotonic() + 0.25 >= deadline:
            return error
        time.sleep(0.25)


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


def _remove_stale_scratch(base: str) -> None:
    """Remove dsar-mariadb-* dirs left by a killed run (old, and no live server)."""
    for path in Path(base).glob("dsar-mariadb-*"):
        try:
            if time.time() - path.stat().st_mtime < 600:
                continue  # maybe another run starting right now
            pid_file = path / "mariadbd.pid"
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


def _start_throwaway() -> MariaDbServer:
    bins = _find_binaries()
    if bins is None:
        pytest.exit("no MariaDB answers and no server binaries (mariadb-install-db, "
                    f"mariadbd) were found: {INSTALL_HINT}", returncode=3)
    base = tempfile.gettempdir()
    _remove_stale_scratch(base)
    scratch = Path(tempfile.mkdtemp(prefix="dsar-mariadb-", dir=base))
    server = MariaDbServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    _register_cleanup(server)
    try:
        _install_db(bins["install_db"], scratch)
        _start_mariadbd(server, bins["server"])
    except Exception as exc:
        log = scratch / "mariadbd.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        pytest.exit(f"could not start a throwaway MariaDB ({bins['server']}): {exc}\n{tail}\n"
                    f"Hint: {INSTALL_HINT}", returncode=3)
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
        server.port = _free_port()
        cmd = [mariadbd, "--no-defaults", f"--datadir={scratch / 'data'}", *_as_root(),
               "--bind-address=127.0.0.1", f"--port={server.port}",
               f"--socket={scratch / 'mariadbd.sock'}", f"--pid-file={scratch / 'mariadbd.pid'}",
               f"--log-error={scratch / 'mariadbd.log'}", "--skip-grant-tables",
               "--skip-log-bin", "--innodb-buffer-pool-size=64M",
               "--innodb-flush-log-at-trx-commit=0", "--skip-innodb-doublewrite"]
        server.process = subprocess.Popen(cmd, cwd=scratch, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while server.process.poll() is None and time.monotonic() < deadline:
            if _probe(server, deadline_s=0.5) is None:
                return
        proc, server.process = server.process, None
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    raise RuntimeError(f"mariadbd did not accept connections within {START_TIMEOUT_S:.0f} s")


_owned: list[MariaDbServer] = []


def _register_cleanup(server: MariaDbServer) -> None:
    if not _owned:
        atexit.register(_shutdown)  # backup if the session fixture's teardown is never reached
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            # SIGTERM skips atexit and fixture teardown: stop the server, then die as asked.
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
    while _owned:
        _owned.pop().stop()
