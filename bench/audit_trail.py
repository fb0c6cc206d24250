"""The audit trail at a million events in PostgreSQL: its page and its checks.

Fills a fresh app database with ``events`` chained, sealed events in bulk (Core
inserts of what ``audit.record`` would write: a year of a busy deployment,
requests of ten events each, officers, connectors, the system), then times
through the Flask test client, signed in as an auditor, the trail page: the
newest events, a page deep into the chain, filtered by request, by officer, by
action and by a month; and the checks of the chain: a full check over every
event, then an incremental one after 1,000 more events. Target: a filtered page
under 300 ms (median).

``python -m bench.audit_trail`` runs this section alone and merges it into
today's results as ``audit_trail`` (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update

from dsar import audit, audit_checks, create_app, migrate
from dsar.console import access
from dsar.models import AuditEvent, AuditHead
from dsar.officers import accounts
from dsar.runtime import Runtime

TARGET_MS = 300.0
BATCH = 10_000
ACTIONS = ("request.received", "verification.code_sent", "request.verified",
           "request.awaiting_review", "request.approved", "request.processing",
           "task.succeeded", "task.succeeded", "task.succeeded", "request.completed")
ACTORS = {"request.received": "requester", "request.verified": "requester",
          "request.approved": "officer:{officer}", "task.succeeded": "connector:{store}"}
STORES = ("crm", "mail", "chat")


def _events(count: int, start: datetime, officers: list[str],
            seed: int = 11) -> Iterator[tuple[str, str, str | None, str, datetime]]:
    """(action, actor, request id, details, time) for ``count`` events over a year."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's workload, not a secret
    step = timedelta(days=365) / count
    for n in range(count):
        request, index = divmod(n, len(ACTIONS))
        action = ACTIONS[index]
        actor = ACTORS.get(action, "system").format(officer=rng.choice(officers),
                                                    store=STORES[index % 3])
        details = json.dumps({"from": "verified"} if action.startswith("request.")
                             else {"records": rng.randint(0, 40)}, separators=(",", ":"))
        yield action, actor, f"{request:032x}", details, start + step * n


def fill(rt: Runtime, count: int, officers: list[str]) -> None:
    """``count`` events chained after the head, sealed, and the head moved."""
    with rt.transaction() as session:
        head = audit.head(session)
    seq, last, rows = int(head["seq"]), str(head["hash"]), []
    start = rt.now() - timedelta(days=365)
    with rt.engine.begin() as conn:
        for action, actor, request_id, details, moment in _events(count, start, officers):
            seq += 1
            digest = audit._hash(seq, moment, actor, action, request_id, details, last)
            rows.append({"seq": seq, "occurred_at": moment, "actor": actor, "action": action,
                         "request_id": request_id, "details": details, "prev_hash": last,
                         "hash": digest, "mac": rt.crypto.audit_mac(digest)})
            last = digest
            if len(rows) >= BATCH:
                conn.execute(insert(AuditEvent.__table__), rows)
                rows.clear()
        if rows:
            conn.execute(insert(AuditEvent.__table__), rows)
        conn.execute(update(AuditHead.__table__).values(
            seq=seq, hash=last, mac=rt.crypto.audit_mac(f"head:{seq}:{last}")))


def _check(rt: Runtime, kind: str) -> tuple[float, Any]:
    with rt.transaction() as session:
        check_id = audit_checks.ask(session, kind, actor="operator:bench").id
    started = time.perf_counter()
    done = audit_checks.run(rt, check_id)
    return time.perf_counter() - started, done


def measure(database_url: str, count: int, samples: int) -> dict[str, Any]:
    from bench.console import _signed_in, _timed

    with tempfile.TemporaryDirectory(prefix="dsar-bench-trail-") as tmp:
        app = create_app({"SECRET_KEY": "bench-" + "x" * 40, "DATABASE_URL": database_url,
                          "EXPORT_DIR": f"{tmp}/exports", "OUTBOX_DIR": f"{tmp}/outbox",
                          "CONNECTORS": None, "AUDIT_FULL_CHECK_HOURS": 0})
        rt: Runtime = app.extensions["dsar"]
        try:
            migrate.upgrade(rt.engine)
            with rt.transaction() as session:  # the officers the events name
                officers = [accounts.create(session, rt, f"officer{n}@example.org", "reviewer",
                                            actor="operator:bench").officer_id
                            for n in range(8)]
            started = time.perf_counter()
            fill(rt, count, officers)
            filled = time.perf_counter() - started
            with rt.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE audit_events")
            full_seconds, full = _check(rt, audit_checks.FULL)
            for n in range(1_000):
                with rt.transaction() as session:
                    audit.record(session, rt.crypto, "test.event", actor="system",
                                 details={"n": n})
            incremental_seconds, incremental = _check(rt, audit_checks.INCREMENTAL)
            token = _signed_in(rt)
            client = app.test_client()
            client.set_cookie(access.COOKIE, token, path="/console")
            month = (rt.now() - timedelta(days=180)).date()
            pages = {
                "trail_newest": "/console/audit",
                "trail_deep": f"/console/audit?before={count // 3}",
                "by_request": f"/console/audit?request={count // 20:032x}",
                "by_officer": f"/console/audit?officer={officers[3]}",
                "by_action": "/console/audit?action=request.approved",
                "by_month": f"/console/audit?since={month}&until={month + timedelta(days=30)}",
                "by_action_and_month": f"/console/audit?action=task.succeeded&since={month}"
                                       f"&until={month + timedelta(days=30)}",
            }
            timings = {name: _timed(client, path, samples) for name, path in pages.items()}
        finally:
            rt.close()
    worst = max(t["median_ms"] for t in timings.values())
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "events": count,
            "fill_seconds": round(filled, 1), "database": "postgresql",
            "through": "Flask test client, signed in (auditor)",
            "full_check_seconds": round(full_seconds, 1), "full_check_ok": full.ok,
            "full_check_events": full.to_seq,
            "incremental_check_seconds": round(incremental_seconds, 2),
            "incremental_check_ok": incremental.ok,
            "incremental_check_events": (incremental.to_seq or 0) - (incremental.from_seq or 0)
            + 1,
            "target_median_ms": TARGET_MS, "meets_target": worst < TARGET_MS, **timings}


def run(pg: Any | None = None, count: int = 1_000_000, samples: int = 30) -> dict[str, Any]:
    """The ``audit_trail`` section: a throwaway PostgreSQL database on ``pg``
    (:func:`bench.server.postgres`'s, one is started when not given)."""
    from bench.server import postgres

    if pg is None:
        with postgres() as started:
            return run(started, count, samples)
    with pg.database("dsar_bench_trail") as url:
        return measure(url, count, samples)


def brief(section: dict[str, Any]) -> str:
    pages = ", ".join(f"{k} {v['median_ms']} ms" for k, v in section.items()
                      if isinstance(v, dict))
    return (f"{pages}; full check {section['full_check_seconds']} s over "
            f"{section['full_check_events']:,} events, incremental "
            f"{section['incremental_check_seconds']} s over "
            f"{section['incremental_check_events']:,}")


if __name__ == "__main__":
    import sys

    from bench import report

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(f"audit trail over {size:,} events ... ({datetime.now(UTC):%H:%M})", flush=True)
    section = run(count=size)
    print(f"  trail: {brief(section)}; target {TARGET_MS:.0f} ms: "
          f"{'meets' if section['meets_target'] else 'MISSES'}")
    print(report.table({"audit_trail": section}))
    print(f"written to {report.save_section('audit_trail', section)}")
