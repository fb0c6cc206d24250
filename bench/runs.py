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
from bench.server import DsarServer, Pg

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
    with server.start(prefix), _mail_fallback(server) as deliver:
        client = drive.Client(server.base, server.outbox, database_url, deliver)
        try:
            yield server, client
        except SystemExit as exc:  # say what the server said
            lines = [line for line in server.log.read_text(errors="replace").splitlines()
                     if " - - [" not in line]  # not the access log
            raise SystemExit(f"{exc}\n--- {server.log} (without the access log), "
                             "last lines:\n" + "\n".join(lines[-25:])) from None
        finally:
            client.close()


@contextlib.contextmanager
def _mail_fallback(server: DsarServer) -> Iterator[Callable[[], int] | None]:
    """``dsar.outbox.deliver_due`` over the server's settings, for a ``dsar
    run`` that queues mail in the outbox table and does not send it (a
    version between the outbox and its delivery by the workers)."""
    try:
        from dsar import create_app, outbox
    except ImportError:  # mail written at once: nothing to hand over
        yield None
        return
    env = server.env
    app = create_app({"SECRET_KEY": env["DSAR_SECRET_KEY"], "DATABASE_URL": server.database_url,
                      "OUTBOX_DIR": str(server.outbox), "CONNECTORS": env["DSAR_CONNECTORS"],
                      "EXPORT_DIR": str(server.instance / "exports")})
    rt = app.extensions["dsar"]
    try:
        yield lambda: outbox.deliver_due(rt)
    finally:
        rt.close()


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
           count: int, threads: int = 4) -> dict[str, Any]:
    """``count`` access requests submitted and verified through the API by
    ``threads`` clients as fast as the server takes them, queueing up behind
    its workers; throughput over the span from the first verification to the
    last completion, from the server's rows (intake competes for the CPU,
    as it would in production)."""
    with serving(root / f"queued-{count}", database_url, connectors) as (_server, client):
        started = time.monotonic()
        ids = drive.intake(client, "access", subjects.take(count), threads)
        taken_in = time.monotonic() - started
        drive.wait_all(client, ids)
        result = drive.throughput(client, ids)
    result["intake_per_s"] = round(count / taken_in, 1)
    return result


def backlog(root: Path, database_url: str, connectors: Path, subjects: Subjects,
            count: int, threads: int = 4) -> dict[str, Any]:
    """``count`` access requests already queued when the workers start: taken
    in through the API of a web process without workers (codes handed over
    by the bench, :func:`_mail_fallback`), then drained by a fresh ``dsar
    run``; (n − 1) over the span from the first completion to the last."""
    intake = DsarServer(root / f"intake-{count}", database_url, connectors)
    intake.migrate()
    with _api_only(intake), _mail_fallback(intake) as deliver:
        client = drive.Client(intake.base, intake.outbox, database_url, deliver,
                              wait_for_server_mail=0)
        ids = drive.intake(client, "access", subjects.take(count), threads)
        client.close()
    with serving(root / f"drain-{count}", database_url, connectors) as (_server, client):
        drive.wait_all(client, ids)
        closed = sorted(c for _s, _v, c in client.rows(ids).values() if c)
    span = (closed[-1] - closed[0]).total_seconds()
    return {"requests": count, "seconds": round(span, 2),
            "requests_per_s": round((count - 1) / span, 1) if span > 0 else None}


API_ONLY = ("import sys; from werkzeug.serving import run_simple; from dsar import create_app; "
            "run_simple('127.0.0.1', int(sys.argv[1]), create_app(), threaded=True)")


@contextlib.contextmanager
def _api_only(server: DsarServer) -> Iterator[None]:
    """The portal and API on ``server``'s settings, no worker or mailer threads
    (as gunicorn serves ``wsgi.py`` beside separate workers)."""
    server.instance.mkdir(parents=True, exist_ok=True)
    with server.log.open("ab") as log:
        server.process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", API_ONLY, str(server.port)],
            env=server.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not server.answers():
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the intake server did not start (log: {server.log})")
            time.sleep(0.1)
        yield
    finally:
        server.stop()
