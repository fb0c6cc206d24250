"""The measurements of one workload on one app database, through a real
``dsar run``: latency of requests one at a time, and throughput of a queue.

Subjects come from :class:`Subjects`: each customer is used once per run
(an erasure changes the store; an access request on an erased customer would
find nothing), drawn in a fixed pseudo-random order through the table.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import drive
from bench.server import DsarServer, Pg, free_port

WARMUP = 2  # untimed requests per kind after a start (imports, pools, caches)


class Subjects:
    """Customers by number, each handed out once."""

    def __init__(self, customers: int, address: Callable[[int], str], seed: int = 9) -> None:
        rng = random.Random(seed)  # noqa: S311 - a fixed order, not a secret
        self._order = rng.sample(range(1, customers + 1), customers)
        self._address = address

    def take(self, count: int) -> list[str]:
        if count > len(self._order):
            raise SystemExit("bench: not enough customers for the requests asked for")
        taken, self._order = self._order[:count], self._order[count:]
        return [self._address(i) for i in taken]


@contextlib.contextmanager
def app_database(pg: Pg, kind: str, root: Path, tag: str) -> Iterator[str]:
    """A fresh, empty app database: a SQLite file or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{root / f'app-{tag}.sqlite3'}"
        return
    name = f"dsar_bench_app_{tag}"
    with psycopg.connect(f"{pg.dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg.url(name)
    finally:
        with psycopg.connect(f"{pg.dsn} dbname=postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@contextlib.contextmanager
def serving(root: Path, database_url: str, connectors: Path,
            prefix: list[str] | None = None) -> Iterator[tuple[DsarServer, drive.Client]]:
    """A migrated, started ``dsar run`` and a client for it."""
    server = DsarServer(root, database_url, connectors)
    server.migrate()
    with server.start(prefix):
        client = drive.Client(server.base, server.outbox, database_url)
        try:
            yield server, client
        finally:
            client.close()


def warm_up(client: drive.Client, subjects: Subjects) -> None:
    for address in subjects.take(WARMUP):
        client.one("access", address)
    for address in subjects.take(WARMUP):
        client.one("erasure", address)


def latency(client: drive.Client, subjects: Subjects, requests: int,
            between: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``requests`` access and erasure requests, alternated, one at a time.
    ``between(kind)`` runs after each of ours (the leader's turn, when compared)."""
    seconds: dict[str, list[float]] = {"access": [], "erasure": []}
    for _ in range(requests):
        for kind in ("access", "erasure"):
            seconds[kind].append(client.one(kind, subjects.take(1)[0]))
            if between is not None:
                between(kind)
    return {kind: drive.summary(values) for kind, values in seconds.items()}


def queued(root: Path, database_url: str, connectors: Path, subjects: Subjects,
           count: int) -> dict[str, Any]:
    """``count`` access requests taken in (submitted and verified through the
    API of a server without workers, as a web process in front of a separate
    executor would be), then drained by a fresh ``dsar run``."""
    intake = DsarServer(root / f"intake-{count}", database_url, connectors)
    intake.migrate()
    started = time.monotonic()
    with _api_only(intake):
        client = drive.Client(intake.base, intake.outbox, database_url)
        ids = drive.intake(client, "access", subjects.take(count))
        client.close()
    taken_in = time.monotonic() - started
    runner = DsarServer(root / f"drain-{count}", database_url, connectors)
    with runner.start():
        client = drive.Client(runner.base, runner.outbox, database_url)
        drive.wait_all(client, ids)
        result = drive.throughput(client, ids)
        client.close()
    result["intake_per_s"] = round(count / taken_in, 1)
    return result


API_ONLY = ("import sys; from werkzeug.serving import run_simple; from dsar import create_app; "
            "run_simple('127.0.0.1', int(sys.argv[1]), create_app(), threaded=True)")


@contextlib.contextmanager
def _api_only(server: DsarServer) -> Iterator[None]:
    """The portal and API of ``server``'s settings with no worker threads."""
    server.port = free_port()
    server.base = f"http://127.0.0.1:{server.port}"
    with server.log.open("ab") as log:
        server.process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", API_ONLY, str(server.port)],
            env=server.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not server._answers():  # noqa: SLF001 - the same readiness probe
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: the intake server did not start (log: {server.log})")
        time.sleep(0.1)
    try:
        yield
    finally:
        server.stop()
