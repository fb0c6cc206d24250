"""The servers a benchmark run needs: PostgreSQL and ``dsar run``.

PostgreSQL (:func:`postgres`), chosen by ``DSAR_BENCH_PG``:

* ``host:port``  use that server (user ``postgres``, trust or ``PGPASSWORD``);
* ``start``      always start a throwaway one;
* unset          127.0.0.1:5432 if it answers within 2 s, else a throwaway one.

A throwaway server lives in a scratch dir outside pytest's temp dirs, runs as
the ``postgres`` user when we are root (PostgreSQL refuses root), on a free
loopback port with default durability (fsync on), and is stopped and removed
when the run ends. :class:`DsarServer` is a real ``dsar run --port P``
process with its own instance folder and ``DSAR_*`` environment.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ENV_PG = "DSAR_BENCH_PG"
DEFAULT_PG = "127.0.0.1:5432"


@dataclass
class Pg:
    """Where the benchmark's PostgreSQL answers."""

    host: str
    port: int
    throwaway: bool = False

    @property
    def dsn(self) -> str:
        """libpq connection string without a database name."""
        return f"host={self.host} port={self.port} user=postgres"

    def url(self, db: str) -> str:
        """SQLAlchemy URL of database ``db``."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{db}"

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[str]:
        """A new, empty database ``name`` (its URL), dropped at the end."""
        with psycopg.connect(f"{self.dsn} dbname=postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(f"{self.dsn} dbname=postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres",
                             connect_timeout=max(1, int(timeout))) as conn:
            conn.execute("SELECT 1")
        return True
    except (OSError, psycopg.Error):
        return False


@contextlib.contextmanager
def postgres(say: Any = print) -> Iterator[Pg]:
    """The PostgreSQL named by ``DSAR_BENCH_PG`` (see the module doc)."""
    choice = os.environ.get(ENV_PG, "").strip()
    if choice and choice != "start":
        host, _, port = choice.rpartition(":")
        if not answers(host, int(port), 5):
            raise SystemExit(f"bench: no PostgreSQL answers at {choice} ({ENV_PG})")
        yield Pg(host, int(port))
        return
    if not choice:
        host, _, port = DEFAULT_PG.rpartition(":")
        if answers(host, int(port)):
            say(f"PostgreSQL: the one answering on {DEFAULT_PG}")
            yield Pg(host, int(port))
            return
    with _throwaway(say) as pg:
        yield pg


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise SystemExit("bench: no PostgreSQL answers and no initdb found: "
                         "apt-get install -y postgresql, or set DSAR_BENCH_PG=host:port")
    return Path(initdb).parent


def _scratch() -> Path:
    """A fresh dir the postgres user can reach (o+x on every parent)."""
    base = Path(tempfile.gettempdir()).resolve()
    if any(not p.stat().st_mode & stat.S_IXOTH for p in (base, *base.parents)):
        base = Path("/tmp")  # noqa: S108 - world-traversable by construction
    return Path(tempfile.mkdtemp(prefix="dsar-bench-pg-", dir=base))


@contextlib.contextmanager
def _throwaway(say: Any) -> Iterator[Pg]:
    bindir, scratch = _binaries(), _scratch()
    user: dict[str, Any] = {}
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        os.chown(scratch, owner.pw_uid, owner.pw_gid)
    scratch.chmod(0o755)
    subprocess.run([str(bindir / "initdb"),  # noqa: S603 - PostgreSQL's own binaries "-D", str(scratch / "data"), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-locale"], cwd=scratch,
                   env={**os.environ, "LC_ALL": "C"}, capture_output=True, check=True,
                   **user)
    port = free_port()
    settings = ["listen_addresses=127.0.0.1", f"unix_socket_directories={scratch}",
                "shared_buffers=512MB", "max_connections=200"]
    cmd = [str(bindir / "postgres"), "-D", str(scratch / "data"), "-p", str(port)]
    for setting in settings:
        cmd += ["-c", setting]
    log = (scratch / "postgres.log").open("ab")
    process = subprocess.Popen(cmd, cwd=scratch,  # noqa: S603 stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, **user)
    try:
        _wait(lambda: answers("127.0.0.1", port, 1), process, 30, "PostgreSQL")
        say(f"PostgreSQL: a throwaway server on 127.0.0.1:{port} ({scratch})")
        yield Pg("127.0.0.1", port, throwaway=True)
    finally:
        _stop(process, signal.SIGINT)
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _wait(ready: Any, process: subprocess.Popen[bytes], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if process.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not answer within {seconds:.0f} s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], sig: int, seconds: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dsar_command() -> list[str]:
    """The ``dsar`` console script beside this interpreter (the venv's)."""
    script = Path(sys.executable).parent / "dsar"
    return [str(script)] if script.exists() else [shutil.which("dsar") or "dsar"]


class DsarServer:
    """``dsar run --port P`` in a fresh instance folder under ``root``.

    ``database_url`` is the app database (migrated before the start),
    ``connectors`` the connector file; codes land in ``outbox``.
    """

    def __init__(self, root: Path, database_url: str, connectors: Path, *,
                 workers: int = 2, extra_env: dict[str, str] | None = None) -> None:
        self.instance = root / "instance"
        self.outbox = self.instance / "outbox"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.env = {**os.environ, "DSAR_INSTANCE_PATH": str(self.instance),
                    "DSAR_ENV": "development", "DSAR_SECRET_KEY": "bench-secret-" + "x" * 40,
                    "DSAR_DATABASE_URL": database_url, "DSAR_CONNECTORS": str(connectors),
                    "DSAR_ERASURE_REVIEW": "false", "DSAR_WORKERS": str(workers),
                    "DSAR_BASE_URL": self.base, "DSAR_LOG_LEVEL": "WARNING",
                    "DSAR_RATE_LIMIT_SUBMIT": "1000000 per hour",
                    "DSAR_RATE_LIMIT_VERIFY": "1000000 per hour",
                    "DSAR_RATE_LIMIT_RESEND": "1000000 per hour", **(extra_env or {})}
        self.env.pop("DSAR_SMTP_URL", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "dsar-run.log"

    def migrate(self) -> None:
        self.instance.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([*dsar_command(), "db", "upgrade"], env=self.env,  # noqa: S603
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"bench: dsar db upgrade failed:\n{done.stderr[-3000:]}")

    def start(self, prefix: list[str] | None = None) -> DsarServer:
        """Start it (``prefix``: e.g. a profiler's command line) and wait for HTTP."""
        self.instance.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the venv's dsar
                [*(prefix or []), *dsar_command(), "run", "--port", str(self.port)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _wait(self.answers, self.process, 60, f"dsar run (log: {self.log})")
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/", timeout=1):  # noqa: S310 - loopback
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGINT, 30)
            self.process = None

    def __enter__(self) -> DsarServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
