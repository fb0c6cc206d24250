"""The engine alone on the demo stores, without HTTP (the first benchmark).

Seeds the three demo stores (SQLite CRM, Maildir, Slack export) with
``customers`` people, then runs access requests and approved erasures
through the in-process executor on an embedded SQLite database: the time
per request from receipt to its final state (one request at a time), the
throughput with many at once, and peak memory. Kept so its figures stay
comparable with earlier results (``demo_inprocess`` in the report).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dsar import create_app, migrate
from dsar.demo import seed
from dsar.executor import InProcessExecutor
from dsar.runtime import Runtime
from dsar.workflow import requests as flow


def _request(rt: Runtime, kind: str, email: str) -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [email]}, actor="bench")
        flow.mark_verified(session, rt, request, actor="bench", method="bench")
        if request.status == "awaiting_review":
            flow.approve(session, rt, request, actor="bench")
        return request.id


def _run(rt: Runtime, kind: str, emails: list[str], workers: int) -> dict[str, Any]:
    """Each request alone (latency), then all at once (throughput)."""
    latencies = []
    with InProcessExecutor(rt, workers, poll_seconds=0.01) as executor:
        for email in emails[: len(emails) // 2]:
            request_id = _request(rt, kind, email)
            executor.wait_until_idle(120)
            latencies.append(_assert_done(rt, request_id))
        batch = emails[len(emails) // 2:]
        started = time.perf_counter()
        ids = [_request(rt, kind, email) for email in batch]
        executor.wait_until_idle(600)
        elapsed = time.perf_counter() - started
    for request_id in ids:
        _assert_done(rt, request_id)
    return {"requests": len(emails),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "latency_ms_max": round(max(latencies) * 1000, 1),
            "batch_requests_per_s": round(len(batch) / elapsed, 2)}


def _assert_done(rt: Runtime, request_id: str) -> float:
    """Seconds from receipt to the final state, as the database recorded them
    (the benchmark's own polling is not counted)."""
    with rt.transaction() as session:
        request = flow.get(session, request_id)
    if request.status != "completed" or request.closed_at is None:
        raise SystemExit(f"bench: request ended {request.status}, not completed")
    return (request.closed_at - request.received_at).total_seconds()


def run(customers: int = 200, requests: int = 40, workers: int = 2) -> dict[str, Any]:
    """The ``demo_inprocess`` section of the report."""
    with tempfile.TemporaryDirectory(prefix="dsar-bench-") as tmp:
        info = seed(Path(tmp) / "instance", customers=customers)
        app = create_app({"SECRET_KEY": "bench-" + "x" * 40, "CONNECTORS": str(info.connector_file),
                          "DATABASE_URL": f"sqlite:///{tmp}/dsar.db",
                          "EXPORT_DIR": f"{tmp}/exports", "OUTBOX_DIR": f"{tmp}/outbox"})
        rt: Runtime = app.extensions["dsar"]
        migrate.upgrade(rt.engine)
        emails = info.emails[: requests * 2]
        access = _run(rt, "access", emails[:requests], workers)
        erasure = _run(rt, "erasure", emails[requests:], workers)
        rt.close()
    return {"database": "sqlite (embedded)", "stores": "demo: sql + maildir + slack_export",
            "customers": customers, "workers": workers, "access": access, "erasure": erasure,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
