"""The engine: fan-out, leases, retries, verified erasure, completion."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from dsar.clock import Clock, MovableClock
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow.task_states import TaskStatus
from tests.support.engine_connectors import Script

ALICE, BOB = "alice@example.org", "bob@example.org"


def two_stores(scripts: dict[str, Script]) -> dict[str, dict[str, Any]]:
    for name in ("crm", "mail"):
        scripts[name] = Script()
        scripts[name].seed(ALICE, 3)
        scripts[name].seed(BOB, 2)
    return {"crm": {"type": "scripted", "script": "crm"},
            "mail": {"type": "scripted", "script": "mail"}}


def submit(rt: Runtime, kind: str = "access", email: str = ALICE) -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [email]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        return request.id


def status(rt: Runtime, request_id: str) -> str:
    with rt.transaction() as session:
        return flow.get(session, request_id).status


def tasks_of(rt: Runtime, request_id: str) -> list[Task]:
    with rt.transaction() as session:
        return list(session.scalars(select(Task).where(Task.request_id == request_id)
                                    .order_by(Task.connector)))


def actions(rt: Runtime, request_id: str) -> list[str]:
    with rt.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.request_id == request_id).order_by(AuditEvent.seq)))


def events(rt: Runtime, request_id: str, action: str) -> list[dict[str, Any]]:
    """The details of a request's ``action`` events, in order."""
    with rt.transaction() as session:
        return [json.loads(e) for e in session.scalars(
            select(AuditEvent.details).where(AuditEvent.request_id == request_id,
                                             AuditEvent.action == action)
            .order_by(AuditEvent.seq))]


def process(rt: Runtime, workers: int = 2, timeout: float = 30) -> None:
    with InProcessExecutor(rt, workers, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(timeout)


def process_on_the_clock(rt: Runtime, workers: int = 2, timeout: float = 30) -> MovableClock:
    """Like :func:`process`, on a clock frozen at the start: whenever nothing
    runs and nothing is due, the clock moves on to the next waiting task's
    time (a retry) instead of anyone waiting for it. Returns the clock."""
    clock = rt.clock = MovableClock(utcnow())
    deadline = time.monotonic() + timeout
    with InProcessExecutor(rt, workers, poll_seconds=0.02) as executor:
        while (due := next_due(rt)) is not None:
            assert time.monotonic() < deadline, f"not done within {timeout} s"
            if due > clock.now():
                clock.advance(due - clock.now())
            time.sleep(0.01)
        assert executor.wait_until_idle(max(deadline - time.monotonic(), 0.1))
    return clock


def next_due(rt: Runtime) -> datetime | None:
    """When the next pending task is due, while none runs (now, if one does);
    ``None`` when no task is left to run. One statement: one snapshot."""
    with rt.transaction() as session:
        left = session.execute(select(Task.status, Task.not_before).where(
            Task.status.in_([TaskStatus.PENDING, TaskStatus.RUNNING]))).all()
    if any(status == TaskStatus.RUNNING for status, _ in left):
        return rt.now()
    due = min((at for _, at in left), default=None)
    return None if due is None else due if due.tzinfo else due.replace(tzinfo=UTC)


def test_access_fans_out_and_completes(make_app: Callable[..., Flask],
                                       scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    assert [t.connector for t in tasks_of(rt, request_id)] == ["crm", "mail"]
    process(rt)
    assert status(rt, request_id) == "completed"
    assert [(t.connector, t.step, t.record_count) for t in tasks_of(rt, request_id)] == [
        ("crm", "export", 3), ("export-bundle", "bundle", 6), ("mail", "export", 3)]
    assert actions(rt, request_id) == [
        "request.received", "request.verified", "request.processing",
        "task.succeeded", "task.succeeded", "task.succeeded", "request.completed"]


def test_submit_returns_before_any_connector_runs(make_app: Callable[..., Flask],
                                                  scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    gate = threading.Event()
    scripts["crm"].gate = gate
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        request_id = submit(rt)  # returns although crm is held
        assert status(rt, request_id) == "processing"
        assert scripts["crm"].started.wait(10), "the executor never picked the task up"
        assert status(rt, request_id) == "processing"
        gate.set()
        assert executor.wait_until_idle(30)
    assert status(rt, request_id) == "completed"


def test_expired_lease_is_taken_up_after_a_restart(make_app: Callable[..., Flask],
                                                   scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    with rt.transaction() as session:  # a worker died holding both tasks
        session.execute(update(Task).where(Task.request_id == request_id).values(
            status="running", lease_owner="dead:worker", attempts=1,
            lease_expires_at=utcnow() - timedelta(seconds=1)))
    process(rt)
    assert status(rt, request_id) == "completed"
    stores = [t for t in tasks_of(rt, request_id) if t.step == "export"]
    # a take-over after a crash is not an attempt: it never uses up the retries
    assert [(t.attempts, t.reclaims) for t in stores] == [(1, 1), (1, 1)]
    # the outcome's event says so; the claims themselves took no audit lock
    assert [e.get("reclaims") for e in events(rt, request_id, "task.succeeded")
            if e["step"] == "export"] == [1, 1]
    assert not [a for a in actions(rt, request_id) if a not in (
        "request.received", "request.verified", "request.processing", "task.succeeded",
        "request.completed")]


def test_live_lease_is_never_run_twice(make_app: Callable[..., Flask],
                                       scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    with rt.transaction() as session:
        session.execute(update(Task).where(Task.request_id == request_id,
                                           Task.connector == "crm").values(
            status="running", lease_owner="other:worker",
            lease_expires_at=utcnow() + timedelta(minutes=5)))
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert [(h.connector, h.step) for h in executor.held_elsewhere()] == [("crm", "export")]
        assert executor.wait_until_idle(1.0) is False  # waits for the other worker
    assert scripts["crm"].calls == []  # held by another live worker
    assert scripts["mail"].calls == ["find"]
    assert status(rt, request_id) == "processing"


class Ticking(Clock):
    """Each look at the clock a little later: ``times`` in turn, then ``then``."""

    def __init__(self, times: list[datetime], then: datetime) -> None:
        self._times, self._then = iter(times), then

    def now(self) -> datetime:
        return next(self._times, self._then)


def test_a_lease_running_out_between_the_two_looks_is_not_idle(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """wait_until_idle asks "is anything due?" and "is anything held by another
    worker?": a foreign lease that runs out between the two questions must
    count in one of them, not slip through both (a process that said "no
    pending work" and left a dead worker's task behind, seen under load)."""
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    expiry = utcnow() + timedelta(minutes=5)
    with rt.transaction() as session:
        session.execute(update(Task).where(Task.request_id == request_id).values(
            status="running", lease_owner="dead:worker", lease_expires_at=expiry))
    rt.clock = Ticking([expiry - timedelta(milliseconds=1), expiry + timedelta(milliseconds=1)],
                       then=expiry - timedelta(hours=1))
    executor = InProcessExecutor(rt, 1, poll_seconds=0.05)  # not started: nothing runs
    assert executor.wait_until_idle(0.3) is False


def test_concurrent_executors_run_each_task_once(make_app: Callable[..., Flask],
                                                 scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    ids = [submit(rt) for _ in range(12)]
    first = InProcessExecutor(rt, 2, poll_seconds=0.02).start()
    second = InProcessExecutor(rt, 2, poll_seconds=0.02).start()
    try:
        assert first.wait_until_idle(60) and second.wait_until_idle(60)
    finally:
        first.stop()
        second.stop()
    assert {status(rt, i) for i in ids} == {"completed"}
    assert len(scripts["crm"].calls) == 12 and len(scripts["mail"].calls) == 12
    assert {t.attempts for i in ids for t in tasks_of(rt, i)} == {1}


def test_retryable_errors_retry_then_succeed(make_app: Callable[..., Flask],
                                             scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    scripts["crm"].fail_times = 2
    request_id = submit(rt)
    process(rt)
    assert status(rt, request_id) == "completed"
    crm = tasks_of(rt, request_id)[0]
    assert crm.attempts == 3
    assert actions(rt, request_id).count("task.retry_scheduled") == 2


def test_retries_back_off_exponentially(make_app: Callable[..., Flask],
                                        scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), TASK_RETRY_SECONDS=10.0).extensions["dsar"]
    scripts["crm"].fail_times = 1
    request_id = submit(rt)
    with InProcessExecutor(rt, 1, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(0.5) is False  # the retry is 10 s away
    crm = tasks_of(rt, request_id)[0]
    assert crm.status == "pending" and crm.attempts == 1
    delay = (crm.not_before - utcnow()).total_seconds()
    assert 4 < delay <= 10  # 10 s with jitter: half to all of it


def test_retryable_errors_give_up_after_the_retry_window(make_app: Callable[..., Flask],
                                                         scripts: dict[str, Script],
                                                         cli: Callable[..., Any]) -> None:
    """A store down for the whole hour of the window (the default first delay
    and cap: 5 s doubling to 5 minutes): the clock is moved to each retry."""
    app = make_app(two_stores(scripts), TASK_RETRY_WINDOW_HOURS=1.0, TASK_RETRY_SECONDS=5.0)
    rt = app.extensions["dsar"]
    scripts["crm"].fail_times = 10_000  # down for longer than the window
    request_id = submit(rt)
    started = utcnow()
    clock = process_on_the_clock(rt)
    assert status(rt, request_id) == "partially_failed"
    crm = tasks_of(rt, request_id)[0]
    assert crm.status == "failed" and crm.attempts > 10
    # the last try fell within the hour, and the next (at most 5 minutes on) would not
    assert timedelta(minutes=55) < clock.now() - started <= timedelta(hours=1)
    assert "store unavailable" in (crm.last_error or "") and "gave up" in (crm.last_error or "")
    scripts["crm"].fail_times = 0
    # an officer retries: the store is back
    result = cli("requests", "retry", request_id, app_=app)
    assert result.exit_code == 0, result.output
    process(rt)
    assert status(rt, request_id) == "completed"


def test_permanent_error_fails_at_once(make_app: Callable[..., Flask],
                                       scripts: dict[str, Script]) -> None:
    scripts["x"] = Script()
    rt = make_app({"broken": {"type": "broken", "script": "x"}}).extensions["dsar"]
    request_id = submit(rt)
    process(rt)
    task = tasks_of(rt, request_id)[0]
    assert (task.status, task.attempts) == ("failed", 1)
    assert "credentials refused" in (task.last_error or "")
    assert status(rt, request_id) == "partially_failed"


def test_erasure_waits_for_review_then_erases_and_verifies(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt, "erasure")
    assert status(rt, request_id) == "awaiting_review"
    assert tasks_of(rt, request_id) == []
    with rt.transaction() as session:
        flow.approve(session, rt, flow.get(session, request_id), actor="officer:test")
    process(rt)
    assert status(rt, request_id) == "completed"
    assert scripts["crm"].records[ALICE] == [] and len(scripts["crm"].records[BOB]) == 2


def test_erasure_that_leaves_a_record_fails_verification(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), ERASURE_REVIEW=False).extensions["dsar"]
    scripts["mail"].leave_behind = 1
    request_id = submit(rt, "erasure")
    process(rt)
    assert status(rt, request_id) == "partially_failed"
    crm, mail = tasks_of(rt, request_id)
    assert crm.status == "succeeded"
    assert mail.status == "failed" and mail.attempts == 1
    assert "erasure not verified: 1 records remain" in (mail.last_error or "")


def test_erasure_keeps_what_a_hold_declares(make_app: Callable[..., Flask],
                                           scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), ERASURE_REVIEW=False).extensions["dsar"]
    scripts["crm"].holds = {f"{ALICE}-0"}
    request_id = submit(rt, "erasure")
    process(rt)
    assert status(rt, request_id) == "completed"
    assert [r.key for r in scripts["crm"].records[ALICE]] == [f"{ALICE}-0"]
    crm = tasks_of(rt, request_id)[0]
    assert '"keep": 1' in (crm.result or "") and "tax-law" in (crm.result or "")


def test_cancel_stops_pending_tasks(make_app: Callable[..., Flask],
                                    scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    with rt.transaction() as session:
        flow.cancel(session, rt, flow.get(session, request_id), actor="test", reason="withdrawn")
    process(rt)
    assert scripts["crm"].calls == [] and status(rt, request_id) == "cancelled"
    assert {t.status for t in tasks_of(rt, request_id)} == {"cancelled"}


def test_lost_lease_discards_the_result(make_app: Callable[..., Flask],
                                        scripts: dict[str, Script]) -> None:
    from dsar.workflow import lease, tasks

    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    task_id = lease.claim(rt, "slow:worker")
    assert task_id is not None
    with rt.transaction() as session:  # the slow worker's lease ran out; another took it
        session.execute(update(Task).where(Task.id == task_id).values(lease_owner="fast:worker"))
    tasks.run(rt, task_id, "slow:worker")
    with rt.transaction() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.status == "running"
        assert task.lease_owner == "fast:worker"
    assert status(rt, request_id) == "processing"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_process_command_runs_everything_and_exits(make_app: Callable[..., Flask],
                                                  scripts: dict[str, Script],
                                                  cli: Callable[..., Any]) -> None:
    app = make_app(two_stores(scripts))
    rt = app.extensions["dsar"]
    ids = [submit(rt) for _ in range(3)]
    started = time.monotonic()
    result = cli("requests", "process", "--timeout", "30", app_=app)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30
    assert {status(rt, i) for i in ids} == {"completed"}
