"""Real RabbitMQ for the test suite: find a running broker or start a throwaway one.

``tests/conftest.py`` star-imports this module, which brings in the session fixture
``rabbitmq_server`` (where the broker is: ``url(vhost)``, ``label``).

Which broker, decided in ``pytest_runtestloop`` (after collection, before any test)
when a collected test uses ``rabbitmq_server`` (a run without such tests starts
nothing):

* ``DSAR_TEST_RABBITMQ=host:port`` use that broker (user and password from
  ``DSAR_TEST_RABBITMQ_USER`` / ``_PASSWORD``, default guest/guest); exit (code 3) if
  it does not answer an AMQP handshake within ~3 s.
* ``DSAR_TEST_RABBITMQ=start``     always start a throwaway broker.
* unset                            probe ``DSAR_TEST_RABBITMQ_PROBE`` (default
  ``127.0.0.1:5672``); if nothing answers, start a throwaway broker.

The throwaway broker is ``rabbitmq-server`` (Debian package ``rabbitmq-server``) as our
child: its own node name, free loopback ports for AMQP, Erlang distribution and a
private epmd, no plugins, its data, logs and Erlang cookie in a scratch dir
(``dsar-rabbitmq-*`` in the temp dir). It is stopped (and its epmd with it) when the
session ends, at exit, or on SIGTERM. Without ``rabbitmq-server`` pytest exits with
code 3 saying what to install: tests needing RabbitMQ are never skipped.

Isolation on a shared broker: each test names its own queue (see tests/test_celery.py)
and deletes it afterwards; nothing else is touched.

Hook names are taken by the other server modules (see tests/conftest.py); this one
owns only ``pytest_runtestloop`` (it returns None, so pytest's own loop runs).
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

import pytest

from tests.support import servers

__all__ = ["RabbitMqServer", "pytest_runtestloop", "rabbitmq_server"]

ENV_TARGET = "DSAR_TEST_RABBITMQ"
ENV_PROBE = "DSAR_TEST_RABBITMQ_PROBE"
DEFAULT_PROBE = "127.0.0.1:5672"
START_TIMEOUT_S = 60.0
INSTALL_HINT = (
    "install RabbitMQ: `apt-get install -y rabbitmq-server` on Debian (or run "
    "scripts/ensure-test-deps.sh rabbitmq), or point DSAR_TEST_RABBITMQ=host:port at a "
    "running broker (DSAR_TEST_RABBITMQ_USER / _PASSWORD, default guest/guest)"
)


@dataclasses.dataclass
class RabbitMqServer:
    """Where the tests' RabbitMQ is, and whether the tests own it."""

    host: str
    port: int
    user: str = "guest"
    password: str = "guest"
    throwaway: bool = False
    scratch: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    epmd_port: int = 0
    version: str = ""

    @property
    def label(self) -> str:
        how = servers.throwaway_or_running(self.throwaway)
        return f"{self.host}:{self.port} {self.version} ({how})"

    def url(self, vhost: str = "/") -> str:
        path = "" if vhost == "/" else vhost
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{path}"

    def stop(self) -> None:
        """Stop a throwaway broker and its epmd, remove the scratch dir; idempotent."""
        proc, self.process = self.process, None
        servers.stop_process(proc, signal.SIGTERM, timeout_s=30)
        if self.throwaway and self.epmd_port:
            epmd = shutil.which("epmd") or "epmd"
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                           capture_output=True, timeout=10, check=False)
            self.epmd_port = 0
        scratch, self.scratch = self.scratch, None
        if self.throwaway and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


_lazy: servers.Lazy[RabbitMqServer] = servers.Lazy(
    "rabbitmq", ENV_TARGET, lambda: _choose_server(), lambda: _require_client())

# --------------------------------------------------------------------------- hooks


def pytest_runtestloop(session: pytest.Session) -> None:
    _lazy.decide(any("rabbitmq_server" in getattr(item, "fixturenames", ())
                     for item in session.items))


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMqServer]:
    """The broker the tests use; a throwaway one is stopped when the session ends."""
    yield from _lazy.session()


# ------------------------------------------------------------------- choose server


def _require_client() -> None:
    try:
        import amqp  # noqa: F401
    except ImportError:
        servers.exit_tests("the amqp client is missing: pip install -e '.[test]' (celery "
                           "brings it)")


def _choose_server() -> RabbitMqServer:
    user = os.environ.get("DSAR_TEST_RABBITMQ_USER", "guest")
    password = os.environ.get("DSAR_TEST_RABBITMQ_PASSWORD", "guest")
    return servers.choose_server(
        ENV_TARGET, ENV_PROBE, DEFAULT_PROBE,
        at=lambda host, port: RabbitMqServer(host, port, user, password),
        probe=_probe, start=_start_throwaway, no_answer="no RabbitMQ answered")


def _probe(server: RabbitMqServer, deadline_s: float, retry: bool = True) -> str | None:
    """None if an AMQP handshake succeeds before the deadline, else the error."""
    import amqp

    def attempt(seconds_left: float) -> None:
        conn = amqp.Connection(host=f"{server.host}:{server.port}", userid=server.user,
                               password=server.password,
                               connect_timeout=min(2.0, max(0.2, seconds_left)))
        try:
            conn.connect()
            version = conn.server_properties.get("version", "?")
            server.version = "RabbitMQ " + (version.decode() if isinstance(version, bytes)
                                            else str(version))
        finally:
            conn.collect()

    return servers.probe_until(attempt, deadline_s, retry, (OSError, amqp.AMQPError))


# --------------------------------------------------------------- throwaway server


def _find_binary() -> str | None:
    # the Debian wrapper in /usr/sbin switches to the rabbitmq user and its
    # /var/lib/rabbitmq; the script behind it runs as whoever starts it
    for path in ("/usr/lib/rabbitmq/bin/rabbitmq-server",):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("rabbitmq-server")


def _start_throwaway() -> RabbitMqServer:
    binary = _find_binary()
    if binary is None:
        servers.exit_tests(
            f"no RabbitMQ answers and no rabbitmq-server binary was found: {INSTALL_HINT}")
    scratch = servers.new_scratch("dsar-rabbitmq-", "rabbitmq.pid", tempfile.gettempdir())
    server = RabbitMqServer("127.0.0.1", 0, throwaway=True, scratch=scratch)
    servers.register_cleanup(server)
    servers.start_or_exit(server, lambda: _start_rabbitmq(server, binary),
                          f"RabbitMQ ({binary})", scratch / "rabbitmq.log", INSTALL_HINT)
    return server


def _environment(server: RabbitMqServer, scratch: Path) -> dict[str, str]:
    (scratch / "enabled_plugins").write_text("[].\n")
    (scratch / "rabbitmq-env.conf").write_text("")
    (scratch / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update({
        "HOME": str(scratch),  # the Erlang cookie is written there
        "RABBITMQ_NODENAME": f"dsar-test-{secrets.token_hex(4)}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(server.port),
        "RABBITMQ_DIST_PORT": str(servers.free_port()),
        "ERL_EPMD_PORT": str(server.epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_CONF_ENV_FILE": str(scratch / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(scratch / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(scratch / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(scratch / "mnesia"),
        "RABBITMQ_LOG_BASE": str(scratch / "log"),
        "RABBITMQ_LOGS": "-",  # to stdout, which goes to rabbitmq.log
        "RABBITMQ_PID_FILE": str(scratch / "rabbitmq.pid"),
    })
    return env


def _start_rabbitmq(server: RabbitMqServer, binary: str) -> None:
    """Run rabbitmq-server as our child and wait until it answers AMQP."""
    assert server.scratch is not None
    scratch = server.scratch
    for _attempt in range(3):  # a free port can be taken between probe and bind
        server.port, server.epmd_port = servers.free_port(), servers.free_port()
        with open(scratch / "rabbitmq.log", "ab") as log:
            server.process = subprocess.Popen(
                [binary], cwd=scratch, env=_environment(server, scratch),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if servers.started(server, lambda: _probe(server, deadline_s=0.5) is None,
                           START_TIMEOUT_S):
            return
    raise RuntimeError(f"rabbitmq-server did not answer within {START_TIMEOUT_S:.0f} s")
