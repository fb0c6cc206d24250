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
(limits' ``key_prefix`` storage option: it prefixes every key the storage writes,
whatever the app's ``RATELIMIT_KEY_PREFIX``); a test's keys are deleted afterwards.
Nothing is ever flushed, so a shared server and concurrent runs are safe.

The hook names are taken: ``tests/support/postgres.py`` owns ``pytest_configure``,
``tests/support/mariadb.py`` ``pytest_collection_finish``; this module defines only
``pytest_collection_modifyitems``. (Exiting from a fixture instead would break
pytest's own teardown of fixtures set up before it.) Its line in the report header
goes through ``servers.add_report_line``; the helpers shared with ``postgres.py`` and
``mariadb.py`` are in ``tests/support/servers.py``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import servers

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
        how = servers.throwaway_or_running(self.throwaway)
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
        # SIGTERM: redis-server exits (nothing to save)
        servers.stop_process(proc, signal.SIGTERM, timeout_s=10)
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


_lazy: servers.Lazy[RedisServer] = servers.Lazy("redis", ENV_TARGET, lambda: _choose_server(),
                                               lambda: _require_client())

# --------------------------------------------------------------------------- hooks


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    _lazy.decide(any(_needs_redis(item) for item in items))


def _needs_redis(item: pytest.Item) -> bool:
    return bool({"redis_db", "redis_server"} & set(getattr(item, "fixturenames", ())))


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The server the tests use; a throwaway one is stopped when the session ends."""
    yield from _lazy.session()


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
        servers.exit_tests("the redis client is missing: pip install -e '.[test]' (or "
                           "'redis>=5,<7')")


def _db_index() -> int:
    raw = os.environ.get(ENV_DB, str(DEFAULT_DB))
    if not raw.isdigit() or int(raw) == 0:
        servers.exit_tests(f"{ENV_DB}={raw!r}: expected a database number above 0 (0 is "
                           "everyone's default; the tests keep out of it)")
    return int(raw)


def _choose_server() -> RedisServer:
    password = os.environ.get("REDISCLI_AUTH", "")
    return servers.choose_server(
        ENV_TARGET, ENV_PROBE, DEFAULT_PROBE,
        at=lambda host, port: RedisServer(host, port, password=password),
        probe=_probe, start=_start_throwaway, no_answer="no Redis answered PING")


def _probe(server: RedisServer, deadline_s: float, retry: bool = True) -> str | None:
    """None if PING (on the tests' database) answers before the deadline, else the
    error. With retry=False one attempt is made: a refused connection answers at once."""
    import redis

    def attempt(seconds_left: float) -> None:
        client = server.client(_db_index(), timeout=min(2.0, max(0.2, seconds_left)))
        try:
            client.ping()
            server.version = "Redis " + str(client.info("server").get("redis_version", "?"))
        finally:
            client.close()

    return servers.probe_until(attempt, deadline_s, retry, (OSError, redis.RedisError))


# --------------------------------------------------------------- throwaway server


def _find_binary() -> str | None:
    return shutil.which("redis-server") or shutil.which("redis-server",
                                                        path="/usr/sbin:/usr/bin")


def _start_throwaway() -> RedisServer:
    binary = _find_binary()
    if binary is None:
        servers.exit_tests(
            f"no Redis answers and no redis-server binary was found: {INSTALL_HINT}")
    scratch = servers.new_scratch("dsar-redis-", "redis.pid", tempfile.gettempdir())
    server = RedisServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    servers.register_cleanup(server)
    servers.start_or_exit(server, lambda: _start_redis(server, binary), f"Redis ({binary})",
                          scratch / "redis.log", INSTALL_HINT)
    return server


def _start_redis(server: RedisServer, binary: str) -> None:
    """Run redis-server as our child (so we reap it) and wait until it answers."""
    assert server.scratch is not None
    scratch = server.scratch
    for _attempt in range(3):  # the free port can be taken between probe and bind
        server.port = servers.free_port()
        cmd = [binary, "--port", str(server.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--daemonize", "no",
               "--dir", str(scratch), "--pidfile", str(scratch / "redis.pid"),
               "--logfile", ""]  # "": log to stdout, which goes to redis.log
        with open(scratch / "redis.log", "ab") as log:
            server.process = subprocess.Popen(cmd, cwd=scratch, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=log)
        if servers.started(server, lambda: _probe(server, deadline_s=0.5) is None,
                           START_TIMEOUT_S):
            return
    raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S:.0f} s")

