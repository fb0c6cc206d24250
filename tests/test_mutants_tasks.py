"""dsar/workflow/tasks.py where `make mutate` found it loose: a task whose worker is
stopping is handed back at once, and a task whose lease was lost keeps its erasure in the
audit trail (``task.result_discarded``, with the note that says which). The runtime's clock
is moved; the connector waits for the heartbeat's stop on an event, never a sleep."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from dsar.clock import MovableClock
from dsar.connector import stop_requested
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import lease, tasks
from dsar.workflow import requests as flow
from tests.support.engine_connectors import Script

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ALICE = "alice@example.org"


@pytest.fixture
def crm(make_app: Callable[..., Flask], scripts: dict[str, Script]) -> tuple[Runtime, Script]:
    scripts["crm"] = Script()
    scripts["crm"].seed(ALICE, 5)
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"}},
                           ERASURE_REVIEW=False, TASK_LEASE_SECONDS=30.0).extensions["dsar"]
    rt.clock = MovableClock(START)
    return rt, scripts["crm"]


def claimed_erasure(rt: Runtime) -> tuple[str, int]:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": [ALICE]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        request_id = request.id
    task_id = lease.claim(rt, "w:1")
    assert task_id is not None
    return request_id, task_id


def after_two_records(script: Script, then: Callable[[], None]) -> None:
    """As the third record is erased: ``then()``, and wait for the heartbeat to ask the call
    to stop (its thread wakes every half second)."""
    seen = 0

    def tick() -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            then()
            asked = threading.Event()
            for _ in range(500):
                if stop_requested() or asked.wait(0.01):
                    break
            assert stop_requested(), "the heartbeat never asked the call to stop"

    script.erase_tick = tick


def discarded(rt: Runtime) -> list[tuple[str, str | None, dict[str, Any]]]:
    with rt.transaction() as session:
        return [(e.actor, e.request_id, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "task.result_discarded"))]


def test_a_task_of_a_stopping_worker_is_handed_back_with_what_it_erased(
        crm: tuple[Runtime, Script], caplog: pytest.LogCaptureFixture) -> None:
    rt, script = crm
    request_id, task_id = claimed_erasure(rt)
    shutdown = threading.Event()
    after_two_records(script, shutdown.set)
    caplog.set_level(logging.INFO, logger=tasks.__name__)
    tasks.run(rt, task_id, "w:1", shutdown)
    assert len(script.erased_keys) == 3  # the third was under way
    with rt.transaction() as session:
        task = session.get(Task, task_id)
        assert task is not None
        assert (task.status, task.lease_owner, task.lease_expires_at, task.attempts) == \
            ("pending", None, None, 1)
        assert task.not_before == START  # another worker may take it at once
    assert discarded(rt) == [("connector:crm", request_id, {
        "task": task_id, "step": "erase",
        "result": {"deleted": 3, "masked": 0, "kept": 0, "stopped": True},
        "note": "its worker stopped; these changes were made to the store before it "
                "handed the task back"})]
    assert f"task {task_id} handed back: its worker is stopping" in \
        [r.getMessage() for r in caplog.records]


def test_a_lost_tasks_erasure_is_recorded_all_the_same(crm: tuple[Runtime, Script]) -> None:
    rt, script = crm
    request_id, task_id = claimed_erasure(rt)

    def taken_over() -> None:
        with rt.transaction() as session:
            session.execute(update(Task).where(Task.id == task_id)
                            .values(lease_owner="w:thief",
                                    lease_expires_at=rt.now() + timedelta(minutes=10)))
        rt.clock.advance(seconds=8)  # type: ignore[attr-defined]  # the heartbeat renews

    after_two_records(script, taken_over)
    tasks.run(rt, task_id, "w:1")
    with rt.transaction() as session:
        task = session.get(Task, task_id)
        assert task is not None
        assert (task.status, task.lease_owner) == ("running", "w:thief")
    assert discarded(rt) == [("connector:crm", request_id, {
        "task": task_id, "step": "erase",
        "result": {"deleted": 3, "masked": 0, "kept": 0, "stopped": True},
        "note": "this worker lost the task; these changes were made to the store all the "
                "same"})]


def test_a_task_that_is_not_ours_is_not_run(crm: tuple[Runtime, Script]) -> None:
    rt, script = crm
    _, task_id = claimed_erasure(rt)
    tasks.run(rt, task_id, "w:other")
    tasks.run(rt, 10_000, "w:1")
    assert script.calls == [] and script.erased_keys == []
    tasks.run(rt, task_id, "w:1")
    assert len(script.erased_keys) == 5
