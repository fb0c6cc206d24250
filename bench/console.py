"""The officer console's queue and dashboard over 100,000 requests in PostgreSQL.

Fills a fresh app database with ``requests`` requests in bulk (Core inserts:
received over the last 400 days, due 30 days later; the older ones closed,
completed mostly, a few partially failed or left overdue; the last five
weeks' open in every open state), one email identifier each (its keyed hash
and ciphertext, as dsar stores them), three tasks for each request processing
or partially failed (some failed or retrying: the dashboard's failing stores),
then times pages through the Flask test client, signed in as an auditor: the
queue's first page, a page deep into it, filtered by status and kind, the
overdue, a search by email (its keyed hash), one request's page, and the
dashboard (counts, percentiles and weeks over every request). Target: the
median under 200 ms (the issue's "renders in under 200 ms"), p95 reported
beside it.

``python -m bench.console`` runs this section alone and merges it into
today's results as ``console_queue`` (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from dsar import create_app, migrate
from dsar.console import access
from dsar.models import Officer, OfficerStatus, Request, SubjectIdentifier, Task
from dsar.officers import accounts, sessions
from dsar.runtime import Runtime

TARGET_MS = 200.0
OPEN = ("received", "verifying", "verified", "awaiting_review", "approved", "processing")
CLOSED = (("completed", 0.85), ("expired", 0.06), ("denied", 0.03), ("cancelled", 0.03),
          ("partially_failed", 0.02), ("processing", 0.01))
BATCH = 10_000
#: the stores of the tasks of requests processing or partially failed
STORES = ("crm", "mail", "chat")


def _rows(count: int, now: datetime, seed: int = 7) -> Iterator[tuple[dict[str, Any], str]]:
    """(request row, the subject's email) for ``count`` requests, repeatable."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's workload, not a secret
    closed, weights = zip(*CLOSED, strict=True)
    for i in range(count):
        received = now - timedelta(days=rng.uniform(0, 400))
        due = received + timedelta(days=30)
        recent = received > now - timedelta(days=35)
        status = rng.choice(OPEN) if recent else rng.choices(closed, weights)[0]
        yield ({"id": f"{i:032x}", "kind": "erasure" if rng.random() < 0.4 else "access",
                "status": status, "received_at": received, "due_at": due,
                "is_review_required": True,
                "closed_at": None if status in OPEN or status == "partially_failed"
                else due - timedelta(days=rng.uniform(1, 25))},
               f"person{i}@example.org")


def _tasks(row: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """A request's export tasks, one a store, when it is processing or partially failed:
    of the partially failed one task failed; of the processing some wait to retry."""
    if row["status"] not in ("processing", "partially_failed"):
        return []
    tasks = []
    for n, store in enumerate(STORES):
        failed = row["status"] == "partially_failed" and n == rng.randrange(len(STORES))
        retrying = row["status"] == "processing" and rng.random() < 0.1
        status = "failed" if failed else "pending" if retrying else "succeeded"
        tasks.append({"request_id": row["id"], "connector": store, "step": "export",
                      "status": status, "attempts": 1, "not_before": row["received_at"],
                      "created_at": row["received_at"],
                      "retrying_since": row["received_at"] if retrying else None})
    return tasks


def fill(rt: Runtime, count: int) -> list[str]:
    """``count`` requests, their email identifiers and tasks; returns the emails."""
    now, emails = rt.now(), []
    requests: list[dict[str, Any]] = []
    identifiers: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    rng = random.Random(11)  # noqa: S311 - a benchmark's workload

    def flush() -> None:
        with rt.engine.begin() as conn:  # Core: one multi-row INSERT per page of rows
            conn.execute(insert(Request.__table__), requests)
            conn.execute(insert(SubjectIdentifier.__table__), identifiers)
            if tasks:
                conn.execute(insert(Task.__table__), tasks)
        requests.clear()
        identifiers.clear()
        tasks.clear()

    for row, email in _rows(count, now):
        requests.append(row)
        identifiers.append({"request_id": row["id"], "kind": "email",
                            "digest": rt.crypto.identifier_digest("email", email),
                            "value_ct": rt.crypto.encrypt_text(email, "identifier:email"),
                            "source": "requester", "added_at": row["received_at"]})
        tasks.extend(_tasks(row, rng))
        emails.append(email)
        if len(requests) >= BATCH:
            flush()
    if requests:
        flush()
    return emails


def _signed_in(rt: Runtime) -> str:
    """An active auditor's session token (set up without the pages: they are not timed)."""
    with rt.transaction() as session:
        invitation = accounts.create(session, rt, "bench@example.org", "auditor",
                                     actor="operator:bench")
        officer = session.get(Officer, invitation.officer_id)
        assert officer is not None  # noqa: S101
        officer.status = OfficerStatus.ACTIVE
        return sessions.open_session(session, rt, officer)


def _timed(client: Any, path: str, samples: int) -> dict[str, Any]:
    for _ in range(3):
        warm = client.get(path)
        if warm.status_code != 200:
            raise SystemExit(f"bench: GET {path} answered {warm.status_code}")
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200  # noqa: S101
    times.sort()
    p95 = times[max(int(round(0.95 * len(times))) - 1, 0)]
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
            "samples": samples}


def measure(database_url: str, count: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dsar-bench-console-") as tmp:
        app = create_app({"SECRET_KEY": "bench-" + "x" * 40, "DATABASE_URL": database_url,
                          "EXPORT_DIR": f"{tmp}/exports", "OUTBOX_DIR": f"{tmp}/outbox",
                          "CONNECTORS": None})
        rt: Runtime = app.extensions["dsar"]
        try:
            migrate.upgrade(rt.engine)
            started = time.perf_counter()
            emails = fill(rt, count)
            filled = time.perf_counter() - started
            with rt.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE requests, subject_identifiers, tasks")
            token = _signed_in(rt)
            client = app.test_client()
            client.set_cookie(access.COOKIE, token, path="/console")
            digest = rt.crypto.identifier_digest("email", emails[count // 2])
            pages = {
                "queue": "/console/",
                "queue_page_20": "/console/?page=20",
                "filtered": "/console/?status=awaiting_review&kind=erasure",
                "overdue": "/console/?due=overdue",
                "searched_email": f"/console/?subject={digest}",
                "request_page": f"/console/requests/{count // 2:032x}",
                "dashboard": "/console/dashboard",
            }
            with rt.transaction() as session:
                open_count = session.query(Request).filter(
                    Request.status.in_((*OPEN, "partially_failed"))).count()
            timings = {name: _timed(client, path, samples) for name, path in pages.items()}
        finally:
            rt.close()
    worst = max(t["median_ms"] for t in timings.values())
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "requests": count,
            "open": open_count, "fill_seconds": round(filled, 1),
            "database": "postgresql", "through": "Flask test client, signed in (auditor)",
            "target_median_ms": TARGET_MS, "meets_target": worst < TARGET_MS, **timings}


def run(pg: Any | None = None, count: int = 100_000, samples: int = 100) -> dict[str, Any]:
    """The ``console_queue`` section: a throwaway PostgreSQL database on ``pg``
    (:func:`bench.server.postgres`'s, one is started when not given)."""
    from bench.server import postgres

    if pg is None:
        with postgres() as started:
            return run(started, count, samples)
    with pg.database("dsar_bench_console") as url:
        return measure(url, count, samples)


def brief(section: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v['median_ms']} ms (p95 {v['p95_ms']})"
                     for k, v in section.items() if isinstance(v, dict))


if __name__ == "__main__":
    from bench import report

    print(f"console queue over 100,000 requests ... ({datetime.now(UTC):%H:%M})", flush=True)
    section = run()
    print(f"  console: {brief(section)}; target {TARGET_MS:.0f} ms: "
          f"{'meets' if section['meets_target'] else 'MISSES'}")
    print(report.table({"console_queue": section}))
    print(f"written to {report.save_section('console_queue', section)}")
