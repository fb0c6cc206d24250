"""Per-request speed and memory of the engine on the demo stores.

Seeds the three demo stores (SQLite CRM, Maildir, Slack export) with
``--customers`` people, then runs access requests and approved erasures
through the in-process executor on the embedded SQLite database, and reports
the time per request from receipt to its final state (one request at a time),
throughput with many at once, and peak memory; then the per-message cost of
a Maildir erasure at 2,000 and 20,000 messages (``bench/maildir_erase.py``).
Results go to ``bench/results/engine-<date>.json`` and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import export_large, maildir_erase
from dsar import create_app, migrate
from dsar.demo import seed
from dsar.executor import InProcessExecutor
from dsar.runtime import Runtime
from dsar.workflow import requests as flow

RESULTS = Path(__file__).parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40, help="per kind")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsar-bench-") as tmp:
        info = seed(Path(tmp) / "instance", customers=args.customers)
        app = create_app({"SECRET_KEY": "bench-" + "x" * 40, "CONNECTORS": str(info.connector_file),
                          "DATABASE_URL": f"sqlite:///{tmp}/dsar.db",
                          "EXPORT_DIR": f"{tmp}/exports", "OUTBOX_DIR": f"{tmp}/outbox"})
        rt: Runtime = app.extensions["dsar"]
        migrate.upgrade(rt.engine)
        emails = info.emails[: args.requests * 2]
        access = _run(rt, "access", emails[: args.requests], args.workers)
        erasure = _run(rt, "erasure", emails[args.requests:], args.workers)
        rt.close()
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
              "database": "sqlite (embedded)", "stores": "demo: sql + maildir + slack_export",
              "customers": args.customers, "workers": args.workers,
              "access": access, "erasure": erasure,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    report["maildir_erase"] = maildir_erase.run()
    report["export_large"] = export_large.run()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"engine-{report['date'][:10]}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
