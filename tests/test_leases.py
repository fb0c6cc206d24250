"""Leases that hold while work runs: the heartbeat during one long connector
call, the stop token, the maximum duration, and recording an outcome through
an app-database outage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from dsar import migrate
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import Task
from dsar.runtime import Runtime
from tests.support.engine_connectors import Script
from tests.support.workers import wait_for
from tests.test_engine import ALICE, events, status, submit, tasks_of, two_stores

LONG_ERASE = {"TASK_LEASE_SECONDS": 0.4, "ERASURE_REVIEW": False}


def crm_task(rt: Runtime, request_id: str) -> Task:
    return next(t for t in tasks_of(rt, request_id) if t.connector == "crm")


def slow_crm(scripts: dict[str, Script], records: int, pause: float) -> None:
    scripts["crm"].seed(ALICE, records)
    scripts["crm"].erase_pause = pause


def test_a_connector_call_longer_than_the_lease_keeps_it(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """One erase call lasting four leases, with a second executor polling all
    along: nobody takes the task over, it is erased once, counted right."""
    rt = make_app(two_stores(scripts), **LONG_ERASE).extensions["dsar"]
    slow_crm(scripts, 4, 0.4)
    request_id = submit(rt, "erasure")
    first = InProcessExecutor(rt, 1, poll_seconds=0.05).start()
    second = InProcessExecutor(rt, 2, poll_seconds=0.05).start()
    try:
        assert first.wait_until_idle(30) and second.wait_until_idle(30)
    finally:
        first.stop()
        second.stop()
    assert status(rt, request_id) == "completed"
    assert scripts["crm"].calls.count("erase") == 1
    assert all("reclaims" not in e for e in events(rt, request_id, "task.succeeded"))
    crm = [e for e in events(rt, request_id, "task.succeeded") if e["records"] == 4]
    assert crm and crm[0]["result"]["deleted"] == 4


def steal_when(rt: Runtime, request_id: str, ready: Callable[[], bool]) -> threading.Thread:
    """Another worker takes the crm task over once ``ready()`` (as if ours had
    been cut off from the database past its lease)."""

    def thief() -> None:
        deadline = time.monotonic() + 20
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        with rt.transaction() as session:
            session.execute(update(Task).where(Task.request_id == request_id,
                                               Task.connector == "crm")
                            .values(lease_owner="thief:worker",
                                    lease_expires_at=utcnow() + timedelta(minutes=10)))

    thread = threading.Thread(target=thief, daemon=True)
    thread.start()
    return thread


def test_a_lost_lease_stops_the_connector_and_records_what_it_did(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), **LONG_ERASE).extensions["dsar"]
    slow_crm(scripts, 8, 0.2)
    request_id = submit(rt, "erasure")
    thief = steal_when(rt, request_id, lambda: len(scripts["crm"].erased_keys) >= 2)
    with InProcessExecutor(rt, 1, poll_seconds=0.05) as executor:
        executor.wait_until_idle(1.0)
        thief.join(20)
        deadline = time.monotonic() + 10
        while not events(rt, request_id, "task.result_discarded"):
            assert time.monotonic() < deadline, "the lost run was never recorded"
            time.sleep(0.05)
    erased = len(scripts["crm"].erased_keys)
    assert 2 <= erased < 8, "the connector did not stop when its lease was lost"
    discarded = events(rt, request_id, "task.result_discarded")
    assert [d["result"]["deleted"] for d in discarded] == [erased]
    assert crm_task(rt, request_id).lease_owner == "thief:worker"


def test_an_overdue_task_is_stopped_and_fails_for_an_officer(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts), TASK_MAX_SECONDS=0.6, **LONG_ERASE).extensions["dsar"]
    slow_crm(scripts, 10, 0.2)
    request_id = submit(rt, "erasure")
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(20)
    assert status(rt, request_id) == "partially_failed"
    crm = crm_task(rt, request_id)
    assert crm.status == "failed" and "TASK_MAX_SECONDS" in (crm.last_error or "")
    erased = len(scripts["crm"].erased_keys)
    assert 0 < erased < 10
    failed = events(rt, request_id, "task.failed")
    assert [f["result"]["deleted"] for f in failed] == [erased]


def test_an_overdue_task_that_ignores_the_stop_fails_anyway(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """The call never stops: a lease after the maximum the heartbeat fails the
    task itself; the late result is recorded as discarded, with its counts."""
    rt = make_app(two_stores(scripts), TASK_MAX_SECONDS=0.5, **LONG_ERASE).extensions["dsar"]
    slow_crm(scripts, 10, 0.25)
    scripts["crm"].ignore_stop = True
    request_id = submit(rt, "erasure")
    with InProcessExecutor(rt, 2, poll_seconds=0.05):
        deadline = time.monotonic() + 20
        while status(rt, request_id) == "processing":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(scripts["crm"].erased_keys) < 10  # failed while the call still ran
        while not events(rt, request_id, "task.result_discarded"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
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
