"""Queued access throughput through the Celery executor, with 1 and 2 workers.

Seeds the demo stores (SQL CRM, Maildir, Slack export) in a scratch folder,
starts ``--workers`` Celery worker processes (``celery -A dsar.celery_executor
worker --pool=threads -c <threads>``) on a broker, waits until they are
ready, then submits ``--requests`` verified access requests from this process
(each publishes its tasks after its commit) and measures from the first
submission to the last request's ``closed_at``: queued requests per second.
Every request must end completed. The app database is a fresh SQLite file, or
``--database-url`` (an empty database: it is migrated).

    .venv/bin/python -m bench.celery_throughput                      # Redis, 1 and 2 workers
    .venv/bin/python -m bench.celery_throughput --broker amqp://guest:guest@127.0.0.1:5672//
    .venv/bin/python -m bench.celery_throughput --json               # one JSON object

``run(...)`` returns the same figures as a dict (for bench/__main__.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

SECRET = "bench-celery-" + "x" * 40
CELERY = str(Path(sys.executable).with_name("celery"))


def _env(root: Path, database_url: str, broker: str, queue: str,
         connectors: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSAR_")}
    env.update({"DSAR_INSTANCE_PATH": str(root / "instance"), "DSAR_SECRET_KEY": SECRET,
                "DSAR_DATABASE_URL": database_url, "DSAR_CONNECTORS": str(connectors),
                "DSAR_EXPORT_DIR": str(root / "exports"), "DSAR_EXECUTOR": "celery",
                "DSAR_BROKER_URL": broker, "DSAR_CELERY_QUEUE": queue,
                "DSAR_LOG_LEVEL": "WARNING"})
    return env


def _start_workers(count: int, threads: int, env: dict[str, str], root: Path,
                   tag: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for index in range(count):
        log = root / f"worker-{tag}-{index}.log"
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(  # noqa: S603
                [CELERY, "-A", "dsar.celery_executor", "worker", "--pool=threads",
                 "-c", str(threads), "-Q", env["DSAR_CELERY_QUEUE"], "-l", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 60
    for index, proc in enumerate(procs):
        log = root / f"worker-{tag}-{index}.log"
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: worker did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _submit(rt: Any, email: str) -> str:
    from dsar.workflow import requests as flow

    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": [email]}, actor="bench")
        flow.mark_verified(session, rt, request, actor="bench", method="bench")
        return str(request.id)


def _wait(rt: Any, ids: list[str], timeout: float) -> datetime:
    """The last ``closed_at`` once every request is closed; all must be completed."""
    from dsar.models import Request

    deadline = time.monotonic() + timeout
    while True:
        with rt.transaction() as session:
            open_count = session.scalar(select(func.count()).select_from(Request).where(
                Request.id.in_(ids), Request.closed_at.is_(None)))
            if not open_count:
                rows = session.execute(select(Request.status, Request.closed_at)
                                       .where(Request.id.in_(ids))).all()
                break
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {open_count} requests still open after {timeout:.0f} s")
        time.sleep(0.05)
    bad = [status for status, _ in rows if status != "completed"]
    if bad:
        raise SystemExit(f"bench: {len(bad)} requests ended {sorted(set(bad))}")
    last = max(closed for _, closed in rows)
    return last if last.tzinfo else last.replace(tzinfo=UTC)


def measure(workers: int, threads: int, requests: int, broker: str,
            database_url: str | None = None) -> dict[str, Any]:
    """One run on fresh stores and a fresh app database."""
    from dsar import create_app, migrate
    from dsar.demo import seed

    with tempfile.TemporaryDirectory(prefix="dsar-bench-celery-") as tmp:
        root = Path(tmp)
        warmup = 2 * workers * threads
        info = seed(root / "instance", customers=requests + warmup)
        url = database_url or f"sqlite:///{root / 'app.sqlite3'}"
        queue = f"dsar-bench-{secrets.token_hex(4)}"
        env = _env(root, url, broker, queue, info.connector_file)
        app = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": url, "EXECUTOR": "celery",
                          "BROKER_URL": broker, "CELERY_QUEUE": queue,
                          "CONNECTORS": str(info.connector_file),
                          "EXPORT_DIR": str(root / "exports"), "ERASURE_REVIEW": False})
        rt = app.extensions["dsar"]
        migrate.upgrade(rt.engine)
        procs = _start_workers(workers, threads, env, root, f"{workers}")
        try:
            _wait(rt, [_submit(rt, e) for e in info.emails[:warmup]], 120)
            emails = info.emails[warmup:warmup + requests]
            started = datetime.now(UTC)
            ids = [_submit(rt, email) for email in emails]
            submitted = (datetime.now(UTC) - started).total_seconds()
            elapsed = (_wait(rt, ids, 1800) - started).total_seconds()
        finally:
            _stop(procs)
            from dsar.celery_executor import uninstall_publisher

            uninstall_publisher(rt)
            rt.close()
    return {"workers": workers, "threads_per_worker": threads, "requests": requests,
            "submit_seconds": round(submitted, 2), "seconds": round(elapsed, 2),
            "requests_per_s": round(requests / elapsed, 2)}


def run(requests: int = 200, threads: int = 2, broker: str = "redis://127.0.0.1:6379/12",
        database_url: str | None = None, workers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    scheme = (database_url or "sqlite").split(":", 1)[0].split("+", 1)[0]
    return {"broker": broker.split(":", 1)[0], "database": scheme,
            "stores": "demo: sql + maildir + slack_export",
            "runs": [measure(n, threads, requests, broker, database_url) for n in workers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="threads per worker process")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.requests, args.threads, args.broker, args.database_url,
                 tuple(args.workers))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Celery on {result['broker']}, {result['database']} app database, "
          f"{result['stores']}")
    for r in result["runs"]:
        print(f"  {r['workers']} worker(s) x {r['threads_per_worker']} threads: "
              f"{r['requests']} queued access requests in {r['seconds']} s = "
              f"{r['requests_per_s']} requests/s (submitting took {r['submit_seconds']} s)")


if __name__ == "__main__":
    main()
