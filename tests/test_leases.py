"""Leases that hold while work runs: the heartbeat during one long connector
call, the stop token, the maximum duration, and recording an outcome through
an app-database outage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from dsar import migrate
from dsar.clock import MovableClock
from dsar.connector import stop_requested
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import Task
from dsar.runtime import Runtime
from dsar.workflow import lease
from tests.support.engine_connectors import Script
from tests.support.workers import wait_for
from tests.test_engine import ALICE, events, status, submit, tasks_of, two_stores

LONG_ERASE = {"TASK_LEASE_SECONDS": 0.4, "ERASURE_REVIEW": False}


def crm_task(rt: Runtime, request_id: str) -> Task:
    return next(t for t in tasks_of(rt, request_id) if t.connector == "crm")


class LeaseClock:
    """The runtime's clock, frozen, and moved by the crm store's erase call:
    each record takes one lease of the clock's time, half a lease at a time.
    After each half the call waits (bounded, in real time) until the
    heartbeat has acted on the new time: renewed the lease for it, found it
    taken (the call's stop token is set), or failed the task past its maximum.

    ``before_record(n)`` runs before the ``n``-th record (1-based), e.g. a
    thief; once the task is not ours, records wait for ``resume`` (set by
    the test) so the test sees the task's state while the call still runs."""

    def __init__(self, rt: Runtime, scripts: dict[str, Script], request_id: str,
                 before_record: Callable[[int], None] | None = None) -> None:
        self.rt, self.request_id = rt, request_id
        self.clock = rt.clock = MovableClock(utcnow())  # frozen from now on
        self.half = timedelta(seconds=lease.lease_seconds(rt) / 2)
        self.before_record = before_record
        self.records = 0
        self.resume = threading.Event()
        scripts["crm"].erase_tick = self.tick

    def tick(self) -> None:
        self.records += 1
        if self.before_record is not None:
            self.before_record(self.records)
        for _ in range(2):
            now = self.clock.advance(self.half)
            wait_for(lambda now=now: self._heartbeat_saw(now), 10)  # type: ignore[misc]
        if not self._ours():
            assert self.resume.wait(10)

    def _ours(self) -> bool:
        task = crm_task(self.rt, self.request_id)
        return task.status == "running" and task.lease_owner != "thief:worker"

    def _heartbeat_saw(self, now: datetime) -> bool:
        task = crm_task(self.rt, self.request_id)
        expires = task.lease_expires_at
        taken = task.lease_owner == "thief:worker"
        renewed = not taken and expires is not None and aware(expires) >= now + 2 * self.half
        lost = taken and stop_requested()
        return renewed or lost or task.status != "running"


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_a_connector_call_longer_than_the_lease_keeps_it(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """One erase call lasting four leases, with a second executor polling all
    along: nobody takes the task over, it is erased once, counted right."""
    rt = make_app(two_stores(scripts), **LONG_ERASE).extensions["dsar"]
    scripts["crm"].seed(ALICE, 4)
    request_id = submit(rt, "erasure")
    moved = LeaseClock(rt, scripts, request_id)
    moved.resume.set()
    first = InProcessExecutor(rt, 1, poll_seconds=0.05).start()
    second = InProcessExecutor(rt, 2, poll_seconds=0.05).start()
    try:
        assert first.wait_until_idle(30) and second.wait_until_idle(30)
    finally:
        first.stop()
        second.stop()
    assert status(rt, request_id) == "completed"
    assert scripts["crm"].calls.count("erase") == 1
    assert moved.records == 4  # four leases of the clock's time went by in the call
    assert all("reclaims" not in e for e in events(rt, request_id, "task.succeeded"))
    crm = [e for e in events(rt, request_id, "task.succeeded") if e["records"] == 4]
    assert crm and crm[0]["result"]["deleted"] == 4


def test_a_lost_lease_stops_the_connector_and_records_what_it_did(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), **LONG_ERASE).extensions["dsar"]
    scripts["crm"].seed(ALICE, 8)
    request_id = submit(rt, "erasure")

    def thief(record: int) -> None:
        """Before the third record another worker takes the task over (as if
        ours had been cut off from the database past its lease)."""
        if record == 3:
            with rt.transaction() as session:
                session.execute(update(Task).where(Task.request_id == request_id,
                                                   Task.connector == "crm")
                                .values(lease_owner="thief:worker",
                                        lease_expires_at=rt.now() + timedelta(minutes=10)))

    LeaseClock(rt, scripts, request_id, before_record=thief).resume.set()
    with InProcessExecutor(rt, 1, poll_seconds=0.05):
        wait_for(lambda: events(rt, request_id, "task.result_discarded"), 20)
    # the third record was under way when the heartbeat found the lease gone;
    # the call stopped at the next record
    assert len(scripts["crm"].erased_keys) == 3
    discarded = events(rt, request_id, "task.result_discarded")
    assert [d["result"]["deleted"] for d in discarded] == [3]
    assert crm_task(rt, request_id).lease_owner == "thief:worker"


def test_an_overdue_task_is_stopped_and_fails_for_an_officer(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """TASK_MAX_SECONDS is 1.5 leases: the heartbeat that sees the clock past
    it (during the second record) asks the call to stop; it stops before the
    third, and the task fails with what it erased."""
    rt = make_app(two_stores(scripts), TASK_MAX_SECONDS=0.6, **LONG_ERASE).extensions["dsar"]
    scripts["crm"].seed(ALICE, 10)
    request_id = submit(rt, "erasure")
    LeaseClock(rt, scripts, request_id).resume.set()
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(20)
    assert status(rt, request_id) == "partially_failed"
    crm = crm_task(rt, request_id)
    assert crm.status == "failed" and "TASK_MAX_SECONDS" in (crm.last_error or "")
    assert len(scripts["crm"].erased_keys) == 2
    failed = events(rt, request_id, "task.failed")
    assert [f["result"]["deleted"] for f in failed] == [2]


def test_an_overdue_task_that_ignores_the_stop_fails_anyway(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """The call never stops: a lease after the maximum the heartbeat fails the
    task itself; the late result is recorded as discarded, with its counts."""
    rt = make_app(two_stores(scripts), TASK_MAX_SECONDS=0.5, **LONG_ERASE).extensions["dsar"]
    scripts["crm"].seed(ALICE, 10)
    scripts["crm"].ignore_stop = True
    request_id = submit(rt, "erasure")
    moved = LeaseClock(rt, scripts, request_id)
    with InProcessExecutor(rt, 2, poll_seconds=0.05):
        wait_for(lambda: status(rt, request_id) != "processing", 20)
        # past 0.5 s at the second record's first half, failed a lease later (the
        # third record's first half) while the call still runs
        assert crm_task(rt, request_id).status == "failed"
        assert len(scripts["crm"].erased_keys) == 2 and moved.records == 3
        moved.resume.set()
        wait_for(lambda: events(rt, request_id, "task.result_discarded"), 20)
    assert status(rt, request_id) == "partially_failed"
    assert "did not stop" in (crm_task(rt, request_id).last_error or "")
    assert events(rt, request_id, "task.result_discarded")[0]["result"]["deleted"] == 10


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_recording_waits_out_an_app_database_outage(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        restartable_pg: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The app database goes down while the connector runs: the worker
    records its outcome as soon as the database is back, not a lease later,
    and logs one line for the outage, not a traceback per poll."""
    app = make_app(two_stores(scripts), DATABASE_URL=restartable_pg.url,
                   TASK_LEASE_SECONDS=30.0)
    rt = app.extensions["dsar"]
    migrate.upgrade(rt.engine)
    gate = threading.Event()
    scripts["crm"].gate = gate
    request_id = submit(rt)
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert scripts["crm"].started.wait(20)
        restartable_pg.stop()
        gate.set()  # the call ends while the database is down
        wait_for(lambda: said(caplog, "will record the outcome when it returns"), 20)
        restartable_pg.start()
        back = time.monotonic()
        assert executor.wait_until_idle(25)
        took = time.monotonic() - back
    assert status(rt, request_id) == "completed"
    assert took < 10, f"recorded {took:.1f} s after the database returned"
    assert crm_task(rt, request_id).reclaims == 0
    assert_quiet_outage(caplog)


def said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


def assert_quiet_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A few lines for the outage, no traceback, no error per poll."""
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert 1 <= len(unavailable) <= 4, [r.getMessage() for r in unavailable]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_idle_workers_log_one_line_per_app_database_outage(
        make_app: Callable[..., Flask], restartable_pg: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    rt = make_app(None, DATABASE_URL=restartable_pg.url).extensions["dsar"]
    migrate.upgrade(rt.engine)
    caplog.set_level(logging.INFO)
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(5)
        restartable_pg.stop()
        wait_for(lambda: executor._outage.failures >= 10, 20)  # polls that found it away
        restartable_pg.start()
        wait_for(lambda: said(caplog, "available again"), 20)
        assert executor.wait_until_idle(15)
    assert_quiet_outage(caplog)
    assert any("available again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failure_to_record_hands_the_task_back_at_once(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dsar import faults

    rt = make_app(two_stores(scripts), TASK_LEASE_SECONDS=60.0).extensions["dsar"]
    monkeypatch.setitem(faults.ACTIONS, "task.complete", "raise")
    request_id = submit(rt)
    with InProcessExecutor(rt, 1, poll_seconds=0.05) as executor:
        executor.wait_until_idle(1.0)
        monkeypatch.delitem(faults.ACTIONS, "task.complete")
        assert executor.wait_until_idle(10), "the task waited for its 60 s lease"
    assert status(rt, request_id) == "completed"
