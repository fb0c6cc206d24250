"""Real Redis for the test suite: find a running server or start a throwaway one.

``tests/conftest.py`` star-imports this module, which brings in the fixtures
``redis_server`` (session: where the server is) and ``redis_db`` (per test: a URL
on logical database 13 and a key prefix of its own, with ``app_config`` for
``make_app`` and ``keys()`` to look at what the app wrote).

Which server, decided in ``pytest_collection_modifyitems`` when a collected test
uses ``redis_db`` or ``redis_server`` (a run without such tests starts nothing),
before any test runs:

* ``DSAR_TEST_REDIS=host:port`` use that server (password from ``REDISCLI_AUTH``, as
  redis-cli reads it); exit (code 3) if PING does not answer within ~3 s.
* ``DSAR_TEST_REDIS=start``     always start a throwaway server.
* unset                         probe ``DSAR_TEST_REDIS_PROBE`` (default
  ``127.0.0.1:6379``) with PING (~2 s); if nothing answers, start a throwaway server.

The throwaway server is ``redis-server`` as our child on a free loopback port, no
persistence (``--save '' --appendonly no``), its working dir and log in a scratch
dir (``dsar-redis-*`` in the temp dir). It is stopped and removed when the session
ends, at exit, or on SIGTERM. Without ``redis-server`` pytest exits with code 3
saying what to install: tests needing Redis are never skipped.

Isolation without touching anyone else's data: tests use logical database
``DSAR_TEST_REDIS_DB`` (default 13), never 0, and each test its own key prefix
(limits' ``key_prefix`` storage option, not Flask-Limiter's ``RATELIMIT_KEY_PREFIX``,
which the shared ``dsar.extensions.limiter`` keeps from the first app it meets); a
test's keys are deleted afterwards. Nothing is ever flushed, so a shared server and
concurrent runs are safe.

The hook names are taken: ``tests/support/postgres.py`` owns ``pytest_configure``,
``tests/support/mariadb.py`` ``pytest_collection_finish``; this module defines only
``pytest_collection_modifyitems``. (Exiting from a fixture instead would break
pytest's own teardown of fixtures set up before it.)
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

__all__ = ["RedisDb", "RedisServer", "pytest_collection_modifyitems", "redis_db",
           "redis_server"]

ENV_TARGET = "DSAR_TEST_REDIS"
ENV_PROBE = "DSAR_TEST_REDIS_PROBE"
ENV_DB = "DSAR_TEST_REDIS_DB"
DEFAULT_PROBE = "127.0.0.1:6379"
DEFAULT_DB = 13
START_TIMEOUT_S = 20.0
INSTALL_HINT = (
    "install Redis: `apt-get install -y redis-server` on Debian (or run "
    "scripts/ensure-test-deps.sh redis), or point DSAR_TEST_REDIS=host:port at a running "
    "server (password in REDISCLI_AUTH)"
)


@dataclasses.dataclass
class RedisServer:
    """Where the tests' Redis is, and whether the tests own it."""

    host: str
    port: int
    password: str = ""
    throwaway: bool = False
    scratch: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    version: str = ""

    @property
    def label(self) -> str:
        how = "throwaway, started by the tests" if self.throwaway else "running"
        return f"{self.host}:{self.port} {self.version} ({how})"

    def url(self, db: int) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, timeout: float = 2.0) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, db=db,
                           password=self.password or None, socket_timeout=timeout,
                           socket_connect_timeout=timeout, decode_responses=True)

    def stop(self) -> None:
        """Stop a throwaway server and remove its scratch dir; idempotent."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: redis-server exits (nothing to save)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        scratch, self.scratch = self.scratch, None
        if self.throwaway and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class RedisDb:
    """One test's share of the server: a database URL and a key prefix."""

    server: RedisServer
    db: int
    prefix: str

    @property
    def url(self) -> str:
        return self.server.url(self.db)

    @property
    def app_config(self) -> dict[str, Any]:
        """Settings for ``make_app``: limits counted in this test's keys."""
        return {"RATELIMIT_STORAGE_URI": self.url,
                "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": self.prefix}}

    def keys(self) -> list[str]:
        """This test's keys, sorted."""
        client = self.server.client(self.db)
        try:
            return sorted(client.scan_iter(match=f"{self.prefix}*", count=500))
        finally:
            client.close()

    def delete_keys(self) -> None:
        client = self.server.client(self.db)
        try:
            names = list(client.scan_iter(match=f"{self.prefix}*", count=500))
            if names:
                client.delete(*names)
        finally:
            client.close()


_server: RedisServer | None = None

# --------------------------------------------------------------------------- hooks


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    global _server
    if _server is None and any(_needs_redis(item) for item in items):
        _require_client()
        _server = _choose_server()


def _needs_redis(item: pytest.Item) -> bool:
    return bool({"redis_db", "redis_server"} & set(getattr(item, "fixturenames", ())))


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The server the tests use; a throwaway one is stopped when the session ends."""
    global _server
    if _server is None:  # a test asked by getfixturevalue without saying so: decide now
        _require_client()
        _server = _choose_server()
    yield _server
    server, _server = _server, None
    if server.throwaway:
        _shutdown()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisDb]:
    """This test's database URL and key prefix; its keys are deleted afterwards."""
    db = RedisDb(redis_server, _db_index(),
                 f"dsar-test-{os.getpid()}-{secrets.token_hex(4)}")
    yield db
    db.delete_keys()


# ------------------------------------------------------------------- choose server


def _require_client() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.exit("the redis client is missing: pip install -e '.[test]' (or "
                    "'redis>=5,<7')", returncode=3)


def _db_index() -> int:
    raw = os.environ.get(ENV_DB, str(DEFAULT_DB))
    if not raw.isdigit() or int(raw) == 0:
        pytest.exit(f"{ENV_DB}={raw!r}: expected a database number above 0 (0 is "
                    "everyone's default; the tests keep out of it)", returncode=3)
    return int(raw)


def _choose_server() -> RedisServer:
    target = os.environ.get(ENV_TARGET, "").strip()
    password = os.environ.get("REDISCLI_AUTH", "")
    if target == "start":
        return _start_throwaway()
    if target:
        host, port = _parse_hostport(target, ENV_TARGET)
        server = RedisServer(host, port, password=password)
        error = _probe(server, deadline_s=3.0)
        if error:
            pytest.exit(f"{ENV_TARGET}={target}: no Redis answered PING within 3 s "
                        f"({error}). Unset it to use {DEFAULT_PROBE} or a throwaway "
                        f"server, or set {ENV_TARGET}=start.", returncode=3)
        return server
    host, port = _parse_hostport(os.environ.get(ENV_PROBE, DEFAULT_PROBE), ENV_PROBE)
    server = RedisServer(host, port, password=password)
    if _probe(server, deadline_s=2.0, retry=False) is None:
        return server
    return _start_throwaway()


def _parse_hostport(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        pytest.exit(f"{name}={value!r}: expected host:port (or 'start')", returncode=3)
    return host, int(port)


def _probe(server: RedisServer, deadline_s: float, retry: bool = True) -> str | None:
    """None if PING (on the tests' database) answers before the deadline, else the
    error. With retry=False one attempt is made: a refused connection answers at once."""
    import redis

    deadline = time.monotonic() + deadline_s
    while True:
        left = max(0.2, deadline - time.monotonic())
        client = server.client(_db_index(), timeout=min(2.0, left))
        try:
            client.ping()
            server.version = "Redis " + str(client.info("server").get("redis_version", "?"))
            return None
        except (OSError, redis.RedisError) as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            error = f"{type(exc).__name__}: {first_line}"
        finally:
            client.close()
        if not retry or time.monotonic() + 0.25 >= deadline:
            return error
        time.sleep(0.25)


# --------------------------------------------------------------- throwaway server


def _find_binary() -> str | None:
    return shutil.which("redis-server") or shutil.which("redis-server",
                                                        path="/usr/sbin:/usr/bin")


def _remove_stale_scratch(base: str) -> None:
    """Remove dsar-redis-* dirs left by a killed run (old, and no live server)."""
    for path in Path(base).glob("dsar-redis-*"):
        try:
            if time.time() - path.stat().st_mtime < 600:
                continue  # maybe another run starting right now
            pid_file = path / "redis.pid"
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


def _start_throwaway() -> RedisServer:
    binary = _find_binary()
    if binary is None:
        pytest.exit(f"no Redis answers and no redis-server binary was found: {INSTALL_HINT}",
                    returncode=3)
    base = tempfile.gettempdir()
    _remove_stale_scratch(base)
    scratch = Path(tempfile.mkdtemp(prefix="dsar-redis-", dir=base))
    server = RedisServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    _register_cleanup(server)
    try:
        _start_redis(server, binary)
    except Exception as exc:
        log = scratch / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        pytest.exit(f"could not start a throwaway Redis ({binary}): {exc}\n{tail}\n"
                    f"Hint: {INSTALL_HINT}", returncode=3)
    return server


def _start_redis(server: RedisServer, binary: str) -> None:
    """Run redis-server as our child (so we reap it) and wait until it answers."""
    assert server.scratch is not None
    scratch = server.scratch
    for _attempt in range(3):  # the free port can be taken between probe and bind
        server.port = _free_port()
        cmd = [binary, "--port", str(server.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--daemonize", "no",
               "--dir", str(scratch), "--pidfile", str(scratch / "redis.pid"),
               "--logfile", ""]  # "": log to stdout, which goes to redis.log
        with open(scratch / "redis.log", "ab") as log:
            server.process = subprocess.Popen(cmd, cwd=scratch, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while server.process.poll() is None and time.monotonic() < deadline:
            if _probe(server, deadline_s=0.5) is None:
                return
        proc, server.process = server.process, None
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S:.0f} s")


_owned: list[RedisServer] = []


def _register_cleanup(server: RedisServer) -> None:
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
