"""dsar/workflow/tasks.py where `make mutate` found it loose: a task whose worker is
stopping is handed back at once, and a task whose lease was lost keeps its erasure in the
audit trail (``task.result_discarded``, with the note that says which); what a task's outcome
records (errors an officer reads, the audit trail's details, the statements a request's
tasks cost); recording through an app-database outage (backoff, one warning, a lost lease
or another failure handing the task back at once); a store's success waking the tasks
waiting for it. The runtime's clock is moved; the connector waits for the heartbeat's stop
on an event, never a sleep; the recording's own waits (``tasks.time``) are a fake that
returns at once."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from dsar import faults
from dsar.clock import MovableClock
from dsar.connector import stop_requested
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import erasure, export_step, lease, tasks
from dsar.workflow import requests as flow
from dsar.workflow.outcome import Outcome
from tests.support.engine_connectors import Script
from tests.support.statements import counting
from tests.support.workers import wait_for

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


def submitted(rt: Runtime, kind: str = "erasure") -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [ALICE]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        return request.id


def claimed_erasure(rt: Runtime) -> tuple[str, int]:
    request_id = submitted(rt)
    task_id = lease.claim(rt, "w:1")
    assert task_id is not None
    return request_id, task_id


def task_of(rt: Runtime, task_id: int) -> Task:
    with rt.transaction() as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task


def task_of_request(rt: Runtime, request_id: str, step: str | None = None) -> Task:
    with rt.transaction() as session:
        query = select(Task).where(Task.request_id == request_id)
        return session.scalars(query if step is None else query.where(Task.step == step)).one()


def audited(rt: Runtime, action: str) -> list[tuple[str, dict[str, Any]]]:
    """Actor and details of every ``action`` event, in order."""
    with rt.transaction() as session:
        return [(e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))]


class Waits:
    """``tasks.time`` for a test: ``sleep`` returns at once, noting the delay and moving
    ``monotonic`` on by it."""

    def __init__(self) -> None:
        self.at = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += seconds


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Waits:
    fake = Waits()
    monkeypatch.setattr(tasks, "time", fake)
    return fake


def unavailable() -> OperationalError:
    """What SQLAlchemy raises while the app database cannot be reached."""
    return OperationalError("UPDATE tasks", {}, sqlite3.OperationalError(
        "unable to open database file"))


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


def test_claim_and_run_hands_the_task_back_when_its_worker_stops(
        crm: tuple[Runtime, Script]) -> None:
    rt, script = crm
    request_id = submitted(rt)
    shutdown = threading.Event()
    after_two_records(script, shutdown.set)
    assert tasks.claim_and_run(rt, "w:1", shutdown) is True
    assert len(script.erased_keys) == 3
    task = task_of_request(rt, request_id)
    assert (task.status, task.lease_owner, task.not_before) == ("pending", None, START)


# A request's one store task, then (access) its bundle step as the follow-up of the same
# call, in app-database statements (BEGIN aside: SQLite's only), claim and recording included:
# each step's needs read with the claim or the recording, not again (README, Performance).
# Completing costs four more, once per request: the requester's notice reads the address
# they verified, writes its link's token and the mail, and (PostgreSQL) wakes a mailer.
@pytest.mark.parametrize(("kind", "statements"), [("access", 22 + 4), ("erasure", 11 + 4)])
def test_a_requests_tasks_run_in_one_call_and_a_fixed_number_of_statements(
        crm: tuple[Runtime, Script], kind: str, statements: int) -> None:
    rt, _ = crm
    request_id = submitted(rt, kind)
    with counting(rt.engine) as seen:
        assert tasks.claim_and_run(rt, "w:1") is True  # an access's bundle step follows
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == "completed"
    sent = [s for s in seen.data if not s.lstrip().upper().startswith("BEGIN")]
    assert len(sent) <= statements, "\n".join(sent)
    assert tasks.claim_and_run(rt, "w:1") is False


def test_an_exports_outcome_counts_its_categories_in_the_audit_trail(
        crm: tuple[Runtime, Script]) -> None:
    rt, _ = crm
    request_id = submitted(rt, "access")
    assert tasks.claim_and_run(rt, "w:1")
    export = task_of_request(rt, request_id, "export")
    part = json.loads(export.result or "{}")["part"]
    assert part.startswith("crm.")
    succeeded = audited(rt, "task.succeeded")
    assert succeeded[0] == ("connector:crm", {
        "task": export.id, "step": "export", "connector": "crm", "attempt": 1, "records": 5,
        "result": {"categories": {"item": 5}, "part": part}})
    assert [actor for actor, _ in succeeded] == ["connector:crm", "connector:export-bundle"]
    assert not [d for _, d in succeeded if "next_try_at" in d]


def test_a_task_taken_back_too_often_fails_without_running(crm: tuple[Runtime, Script]) -> None:
    rt, script = crm
    _, task_id = claimed_erasure(rt)
    limit = int(rt.settings["TASK_MAX_RECLAIMS"])
    with rt.transaction() as session:
        session.execute(update(Task).where(Task.id == task_id).values(reclaims=limit + 1))
    tasks.run(rt, task_id, "w:1")
    assert script.calls == []
    task = task_of(rt, task_id)
    error = (f"its worker stopped {limit + 1} times while running it; check the workers' "
             "logs (memory, crashes) before retrying")
    assert (task.status, task.last_error, task.finished_at, task.lease_owner) == (
        "failed", error, START, None)
    assert [d["error"] for _, d in audited(rt, "task.failed")] == [error]


def test_a_task_taken_back_exactly_the_allowed_times_still_runs(
        crm: tuple[Runtime, Script]) -> None:
    rt, script = crm
    _, task_id = claimed_erasure(rt)
    with rt.transaction() as session:
        session.execute(update(Task).where(Task.id == task_id)
                        .values(reclaims=int(rt.settings["TASK_MAX_RECLAIMS"])))
    tasks.run(rt, task_id, "w:1")
    assert script.calls != [] and task_of(rt, task_id).status == "succeeded"


def test_a_task_that_ignores_the_stop_past_its_maximum_fails_naming_the_setting(
        crm: tuple[Runtime, Script]) -> None:
    """Past TASK_MAX_SECONDS the heartbeat asks the call to stop; a lease later, the call
    still running, it fails the task itself; the late result is discarded."""
    rt, script = crm
    script.ignore_stop = True
    request_id, task_id = claimed_erasure(rt)
    clock: MovableClock = rt.clock  # type: ignore[assignment]

    def tick() -> None:
        if script.erased_keys:
            return
        past = clock.advance(seconds=float(rt.settings["TASK_MAX_SECONDS"]) + 1)
        renewed = past + timedelta(seconds=lease.lease_seconds(rt))
        # asked to stop, and the lease renewed as of then (the next beat counts from it)
        wait_for(lambda: stop_requested() and task_of(rt, task_id).lease_expires_at == renewed,
                 5)
        clock.advance(seconds=lease.lease_seconds(rt) + 1)
        wait_for(lambda: task_of(rt, task_id).status == "failed", 5)

    script.erase_tick = tick
    tasks.run(rt, task_id, "w:1")
    task = task_of(rt, task_id)
    assert (task.status, task.last_error) == ("failed", "ran longer than TASK_MAX_SECONDS "
                                              "and did not stop when asked; it may still "
                                              "be running")
    assert [(r, d["result"]["deleted"]) for _, r, d in discarded(rt)] == [(request_id, 5)]


def test_the_crash_tests_fault_points_lie_on_the_recording_path(
        crm: tuple[Runtime, Script], monkeypatch: pytest.MonkeyPatch, waits: Waits) -> None:
    """``task.before_complete`` fires before the outcome is recorded; ``task.complete``
    inside the recording, which, failing for a reason other than an outage, hands the
    task back at once (no wait)."""
    rt, script = crm
    _, task_id = claimed_erasure(rt)
    monkeypatch.setitem(faults.ACTIONS, "task.before_complete", "raise")
    with pytest.raises(faults.FaultInjected):
        tasks.run(rt, task_id, "w:1")
    assert (task_of(rt, task_id).status, task_of(rt, task_id).lease_owner) == ("running", "w:1")
    monkeypatch.delitem(faults.ACTIONS, "task.before_complete")
    monkeypatch.setitem(faults.ACTIONS, "task.complete", "raise")
    tasks.run(rt, task_id, "w:1")
    task = task_of(rt, task_id)
    assert (task.status, task.lease_owner, task.not_before) == (
        "pending", None, START + timedelta(seconds=1))
    assert waits.slept == []
    assert audited(rt, "task.succeeded") == []


def test_recording_waits_out_an_outage_backing_off_with_one_warning(
        crm: tuple[Runtime, Script], monkeypatch: pytest.MonkeyPatch, waits: Waits,
        caplog: pytest.LogCaptureFixture) -> None:
    rt, _ = crm
    _, task_id = claimed_erasure(rt)
    complete, down = tasks.complete, 6

    def failing(*args: Any, **kwargs: Any) -> bool:
        nonlocal down
        if down:
            down -= 1
            raise unavailable()
        return complete(*args, **kwargs)

    monkeypatch.setattr(tasks, "complete", failing)
    caplog.set_level(logging.WARNING, logger=tasks.__name__)
    tasks.run(rt, task_id, "w:1")
    assert waits.slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert task_of(rt, task_id).status == "succeeded"
    assert [r.getMessage() for r in caplog.records if r.name == tasks.__name__] == [
        f"task {task_id}: app database unavailable; will record the outcome when it returns"]


def test_recording_through_an_outage_gives_up_at_once_once_the_lease_is_lost(
        crm: tuple[Runtime, Script], monkeypatch: pytest.MonkeyPatch, waits: Waits) -> None:
    rt, _ = crm
    _, task_id = claimed_erasure(rt)

    def failing(*_: Any, **__: Any) -> bool:
        raise unavailable()

    monkeypatch.setattr(tasks, "complete", failing)
    lost = threading.Event()
    lost.set()
    assert tasks._record(rt, task_id, "w:1", Outcome(True), lost) is None
    assert waits.slept == []
    assert (task_of(rt, task_id).status, task_of(rt, task_id).lease_owner) == ("pending", None)


def test_complete_records_only_a_running_task_under_our_lease(
        crm: tuple[Runtime, Script]) -> None:
    rt, _ = crm
    _, task_id = claimed_erasure(rt)
    submitted(rt)  # another request's task, pending
    assert tasks.complete(rt, 10_000, "w:1", Outcome(True)) is False
    assert tasks.complete(rt, task_id, "w:other", Outcome(True, records=5)) is False
    task = task_of(rt, task_id)
    assert (task.status, task.lease_owner, task.record_count) == ("running", "w:1", 0)
    assert tasks.complete(rt, task_id, "w:1", Outcome(True, records=5)) is True
    task = task_of(rt, task_id)
    assert (task.status, task.lease_owner, task.record_count) == ("succeeded", None, 5)


def test_a_scheduled_retry_names_its_next_try_in_the_audit_trail(
        crm: tuple[Runtime, Script]) -> None:
    rt, script = crm
    script.fail_times = 1
    _, task_id = claimed_erasure(rt)
    tasks.run(rt, task_id, "w:1")
    task = task_of(rt, task_id)
    assert task.status == "pending" and task.not_before > START
    (_, details), = audited(rt, "task.retry_scheduled")
    assert datetime.fromisoformat(details["next_try_at"]) == task.not_before


def test_a_connector_bug_or_a_connector_gone_fails_saying_so(
        crm: tuple[Runtime, Script], monkeypatch: pytest.MonkeyPatch) -> None:
    rt, script = crm
    script.fail_times, script.fail_with = 1, ValueError
    _, buggy = claimed_erasure(rt)
    tasks.run(rt, buggy, "w:1")
    _, gone = claimed_erasure(rt)
    monkeypatch.delitem(rt.connectors, "crm")
    tasks.run(rt, gone, "w:1")
    assert [(t.status, t.last_error) for t in (task_of(rt, buggy), task_of(rt, gone))] == [
        ("failed", "unexpected ValueError in the connector (a bug: see the worker's log)"),
        ("failed", "connector 'crm' is no longer configured")]


def test_a_store_without_the_subjects_kinds_succeeds_saying_it_skipped(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    scripts["crm"], scripts["sms"] = Script(), Script()
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"},
                            "sms": {"type": "scripted", "script": "sms", "kinds": ["phone"]}},
                           ERASURE_REVIEW=False).extensions["dsar"]
    request_id = submitted(rt)
    while tasks.claim_and_run(rt, "w:1"):
        pass
    assert scripts["sms"].calls == []
    results = {d["connector"]: d["result"] for _, d in audited(rt, "task.succeeded")}
    assert results["sms"] == {"skipped": erasure.NO_KINDS}
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == "completed"


def test_a_discovery_lists_the_identifiers_it_added_as_digests(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    phone = "+447700900001"
    scripts["crm"] = Script()
    scripts["crm"].links[ALICE] = {"phone": {phone}}
    rt: Runtime = make_app({"crm": {"type": "discovering", "script": "crm"}},
                           ERASURE_REVIEW=False).extensions["dsar"]
    submitted(rt)
    assert tasks.claim_and_run(rt, "w:1")
    (_, details), = audited(rt, "task.succeeded")
    assert details["step"] == "discover"
    assert details["result"] == {"added": [f"phone:{rt.crypto.identifier_digest('phone', phone)}"]}


def test_a_failed_bundle_build_fails_the_step_naming_the_error(
        crm: tuple[Runtime, Script], monkeypatch: pytest.MonkeyPatch) -> None:
    rt, _ = crm

    def broken(*_: Any) -> Outcome:
        raise ValueError("a bug")

    monkeypatch.setattr(export_step, "build", broken)
    request_id = submitted(rt, "access")
    assert tasks.claim_and_run(rt, "w:1")
    bundle = task_of_request(rt, request_id, "bundle")
    assert (bundle.status, bundle.last_error) == ("failed",
                                                  "building the export failed (ValueError)")
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == "partially_failed"


def test_a_stores_success_wakes_its_waiting_tasks_at_most_every_five_seconds(
        crm: tuple[Runtime, Script], waits: Waits) -> None:
    """A task waiting to retry the store is due at once; one already due keeps its place
    (its time); a second success within five seconds wakes nobody."""
    rt, _ = crm
    later, earlier = START + timedelta(hours=1), START - timedelta(minutes=1)
    waiting, due = submitted(rt), submitted(rt)
    with rt.transaction() as session:
        for request_id, at in ((waiting, later), (due, earlier)):
            session.execute(update(Task).where(Task.request_id == request_id).values(
                retrying_since=START - timedelta(minutes=5), not_before=at))

    def succeed() -> None:
        task_id = task_of_request(rt, submitted(rt)).id
        assert lease.claim_task(rt, task_id, "w:1")
        tasks.run(rt, task_id, "w:1")
        assert task_of(rt, task_id).status == "succeeded"

    succeed()
    assert (task_of_request(rt, waiting).not_before, task_of_request(rt, due).not_before) == (
        START, earlier)
    with rt.transaction() as session:
        session.execute(update(Task).where(Task.request_id == waiting).values(not_before=later))
    waits.at += 4.9
    succeed()
    assert task_of_request(rt, waiting).not_before == later
