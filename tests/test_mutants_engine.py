"""dsar/workflow/engine.py's after_discovery, run by one worker so the order is fixed: the
audit events of each discovery round and of its end (to the field), and which work tasks
a late discovery runs again. Then start_processing, finalise and task_ended: their audit
events to the field, the bundle step claimed for the worker that ended the last export,
and no second read of the tasks a worker already holds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.connector import RetryableError, Subject
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import engine, lease
from dsar.workflow import requests as flow
from tests.support.engine_connectors import Script
from tests.support.statements import counting
from tests.support.workers import drain
from tests.test_discovery import EMAIL, stores
from tests.test_engine import ALICE, status, submit, two_stores


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

    def discover_failing_once(subject: Subject) -> Mapping[str, Iterable[str]]:
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


# engine.start_processing, finalise and task_ended driven directly, one transaction at a
# time: the tasks' outcomes are written as a worker would have recorded them.

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def request_events(rt: Runtime, request_id: str, action: str) -> list[tuple[str, dict[str, Any]]]:
    with rt.transaction() as session:
        return [(e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.request_id == request_id,
                                     AuditEvent.action == action).order_by(AuditEvent.seq))]


def ended(rt: Runtime, request_id: str, outcomes: dict[str, tuple[str, int]]) -> None:
    """Each named connector's task ended: (status, records)."""
    with rt.transaction() as session:
        for task in engine.tasks_of(session, request_id):
            task.status, task.record_count = outcomes[task.connector]


def test_processing_starts_with_an_event_naming_the_step_the_stores_and_the_discoverers(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt: Runtime = make_app(stores(scripts)).extensions["dsar"]
    request_id = submit(rt, "access", EMAIL)
    assert request_events(rt, request_id, "request.processing") == [
        ("system", {"from": "verified", "step": "export",
                    "connectors": ["billing", "crm", "phonebook", "tickets"],
                    "discovery": ["billing", "crm"]})]


def test_a_failed_task_ends_the_request_partially_failed_naming_the_failed_stores(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt: Runtime = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt, "access", ALICE)
    ended(rt, request_id, {"crm": ("failed", 0), "mail": ("succeeded", 2)})
    with rt.transaction() as session:
        assert engine.finalise(session, rt, request_id) is None
    assert status(rt, request_id) == "partially_failed"
    assert request_events(rt, request_id, "request.partially_failed") == [
        ("system", {"from": "processing", "failed": ["crm"]})]


def test_an_erasure_completes_with_the_records_of_its_tasks(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt: Runtime = make_app(two_stores(scripts), ERASURE_REVIEW=False).extensions["dsar"]
    request_id = submit(rt, "erasure", ALICE)
    ended(rt, request_id, {"crm": ("succeeded", 3), "mail": ("succeeded", 2)})
    with rt.transaction() as session:
        assert engine.finalise(session, rt, request_id) is None
    assert status(rt, request_id) == "completed"
    assert request_events(rt, request_id, "request.completed") == [
        ("system", {"from": "processing", "records": 5})]


def test_ending_the_last_task_with_its_tasks_in_hand_reads_none_again(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """The worker recording an outcome has read (and locked) the request and its tasks:
    finalising on them reads neither again. Its only read is the address the
    requester verified, for the notice (dsar/workflow/notices.py), which then
    writes the mail (with the change, flushed)."""
    rt: Runtime = make_app(two_stores(scripts), ERASURE_REVIEW=False).extensions["dsar"]
    request_id = submit(rt, "erasure", ALICE)
    with rt.transaction() as session:
        request = flow.get(session, request_id, lock=True)
        tasks = engine.tasks_of(session, request_id, lock=True)
        for task in tasks:
            task.status = "succeeded"
        session.flush()
        with counting(rt.engine) as seen:
            assert engine.task_ended(session, rt, tasks[-1], "w:1", locked=request,
                                     tasks=tasks) is None
        reads = [s for s in seen.data if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 1 and "FROM subject_identifiers" in reads[0], reads
        assert not any("FROM requests" in s or "FROM tasks" in s for s in seen.data)
    assert status(rt, request_id) == "completed"


def test_the_worker_ending_an_access_requests_last_export_gets_its_bundle_step(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """Claimed for that worker under a live lease (TASK_LEASE_SECONDS is 30), so no
    other worker takes it over before the lease runs out."""
    rt: Runtime = make_app(two_stores(scripts)).extensions["dsar"]
    clock = rt.clock = MovableClock(START)
    request_id = submit(rt, "access", ALICE)
    ended(rt, request_id, {"crm": ("succeeded", 3), "mail": ("succeeded", 2)})
    with rt.transaction() as session:
        last = engine.tasks_of(session, request_id)[-1]
        bundle = engine.task_ended(session, rt, last, "w:1")
        assert bundle is not None
        assert (bundle.connector, bundle.step, bundle.status, bundle.lease_owner,
                bundle.attempts, bundle.not_before, bundle.lease_expires_at) == (
            "export-bundle", "bundle", "running", "w:1", 1, START,
            START + timedelta(seconds=30))
        assert [t.connector for t in engine.tasks_of(session, request_id)] == [
            "crm", "export-bundle", "mail"]  # by connector, not in the order of creation
    assert status(rt, request_id) == "processing"
    assert lease.claim(rt, "w:2") is None
    clock.advance(seconds=30, microseconds=1)
    assert lease.claim(rt, "w:2") == bundle.id
