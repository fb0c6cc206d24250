"""dsar/workflow/engine.py's after_discovery, run by one worker so the order is fixed: the
audit events of each discovery round and of its end (to the field), and which work tasks
a late discovery runs again."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import select

from dsar.connector import RetryableError, Subject
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from tests.support.engine_connectors import Script
from tests.support.workers import drain
from tests.test_discovery import EMAIL, stores
from tests.test_engine import status, submit


def discovery_events(rt: Runtime, request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    with rt.transaction() as session:
        return [(e.action, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.request_id == request_id,
                                     AuditEvent.action.startswith("discovery."))
            .order_by(AuditEvent.seq))]


def runs(rt: Runtime, request_id: str, step: str) -> Counter[str]:
    """How many times each connector's ``step`` task succeeded."""
    with rt.transaction() as session:
        return Counter(json.loads(e.details)["connector"] for e in session.scalars(
            select(AuditEvent).where(AuditEvent.request_id == request_id,
                                     AuditEvent.action == "task.succeeded"))
            if json.loads(e.details)["step"] == step)


SOURCES = {"connector:billing": 1, "connector:crm": 1, "requester": 1}


def test_each_round_and_the_end_of_discovery_are_recorded(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """billing (by phone) has nothing to go on in the first round; crm finds the phone;
    billing then finds the customer id; one more round finds nothing new."""
    rt: Runtime = make_app(stores(scripts)).extensions["dsar"]
    request_id = submit(rt, "access", EMAIL)
    drain(rt)
    assert status(rt, request_id) == "completed"
    assert discovery_events(rt, request_id) == [
        ("discovery.round", "system", {"identifiers": 2, "connectors": ["billing", "crm"]}),
        ("discovery.round", "system", {"identifiers": 3, "connectors": ["billing"]}),
        ("discovery.completed", "system", {"identifiers": 3, "sources": SOURCES}),
    ]
    assert runs(rt, request_id, "export") == {"billing": 1, "crm": 1, "phonebook": 1,
                                              "tickets": 1}


def test_a_late_discovery_reruns_the_work_that_ran_without_it(
        make_app: Callable[..., Flask], scripts: dict[str, Script], cli: Any) -> None:
    """billing's discovery fails (for good: no retry window) when it first has a phone to
    look up, so the work starts on two identifiers; the officer's retry finds the customer
    id, and every export that ran on two identifiers runs again, on three."""
    app = make_app(stores(scripts), TASK_RETRY_WINDOW_HOURS=1e-9)
    rt: Runtime = app.extensions["dsar"]
    billing = rt.connectors["billing"]
    real = billing.discover
    failed: list[bool] = []

    def discover_failing_once(subject: Subject) -> dict[str, set[str]]:
        if not failed:
            failed.append(True)
            raise RetryableError("billing unavailable")
        return real(subject)

    billing.discover = discover_failing_once  # type: ignore[method-assign]
    request_id = submit(rt, "access", EMAIL)
    drain(rt)
    assert status(rt, request_id) == "partially_failed"
    with rt.transaction() as session:
        seen = {(t.step, t.connector): (t.status, t.identifiers_seen) for t in session.scalars(
            select(Task).where(Task.request_id == request_id))}
    assert seen[("discover", "billing")] == ("failed", 2)
    assert {s for (step, _), s in seen.items() if step == "export"} == {("succeeded", 2)}
    assert cli("requests", "retry", request_id, app_=app).exit_code == 0
    drain(rt)
    assert status(rt, request_id) == "completed"
    assert runs(rt, request_id, "export") == {"billing": 2, "crm": 2, "phonebook": 2,
                                              "tickets": 2}
    assert runs(rt, request_id, "discover") == {"billing": 3, "crm": 3}
    assert discovery_events(rt, request_id)[-1] == (
        "discovery.completed", "system", {"identifiers": 3, "sources": SOURCES})
