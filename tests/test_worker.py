"""Production workers: a commit wakes workers of other processes at once
(PostgreSQL), housekeeping runs in exactly one process, and a stopping worker
finishes or hands back its tasks; ``dsar worker`` as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.clock import Clock, MovableClock
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import AuditEvent, WorkerRole
from dsar.workflow import lease
from tests.support.engine_connectors import Script
from tests.support.workers import DSAR, make_instance, wait_for
from tests.test_engine import ALICE, status, submit, tasks_of, two_stores


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_commit_in_another_process_wakes_the_workers_at_once(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """Two apps on one PostgreSQL database stand for gunicorn and a worker
    process: the worker polls only every 30 s, yet starts within a second."""
    web = make_app(two_stores(scripts)).extensions["dsar"]
    worker = make_app(two_stores(scripts)).extensions["dsar"]
    with InProcessExecutor(worker, 2, poll_seconds=30.0) as executor:
        assert executor.listening.wait(10)
        request_id = submit(web)
        took = wait_for(lambda: status(web, request_id) == "completed", 10)
        assert executor.wait_until_idle(5)
    assert took < 3, f"woken after {took:.1f} s"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_housekeeping_runs_in_one_process_and_passes_on(
        make_app: Callable[..., Flask]) -> None:
    rt = make_app(None, TASK_LEASE_SECONDS=0.5).extensions["dsar"]
    clock = rt.clock = MovableClock(utcnow())
    assert lease.hold_role(rt, "housekeeping", "a:housekeeper", 60.0)
    assert not lease.hold_role(rt, "housekeeping", "b:housekeeper", 60.0)
    clock.advance(seconds=59)
    assert lease.hold_role(rt, "housekeeping", "a:housekeeper", 60.0)  # renewed
    clock.advance(seconds=60)
    assert not lease.hold_role(rt, "housekeeping", "b:housekeeper", 60.0)  # to the instant
    clock.advance(seconds=1)  # a died: the clock moves past its hold
    assert lease.hold_role(rt, "housekeeping", "b:housekeeper", 60.0)
    lease.drop_role(rt, "housekeeping", "b:housekeeper")
    rt.clock = Clock()
    with InProcessExecutor(rt, 1, poll_seconds=0.05) as first, \
            InProcessExecutor(rt, 1, poll_seconds=0.05) as second:
        def holder() -> str | None:
            with rt.transaction() as session:
                return session.scalar(select(WorkerRole.holder).where(
                    WorkerRole.name == "housekeeping"))

        wait_for(lambda: holder() is not None, 10)
        assert holder() in (f"{first.id}:housekeeper", f"{second.id}:housekeeper")
    with rt.transaction() as session:  # both stopped: given up
        assert session.scalar(select(WorkerRole.holder)) is None


def test_a_stopping_worker_hands_its_task_back(make_app: Callable[..., Flask],
                                               scripts: dict[str, Script]) -> None:
    """Past the grace period the call is asked to stop; the task is pending
    again (not failed, no attempt used), what it erased is on record, and
    another worker finishes it."""
    rt = make_app(two_stores(scripts), ERASURE_REVIEW=False).extensions["dsar"]
    scripts["crm"].seed(ALICE, 8)
    scripts["crm"].erase_pause = 0.2
    request_id = submit(rt, "erasure")
    executor = InProcessExecutor(rt, 2, poll_seconds=0.05).start()
    wait_for(lambda: len(scripts["crm"].erased_keys) >= 2, 10)
    executor.stop(grace=0.1)
    crm = next(t for t in tasks_of(rt, request_id) if t.connector == "crm")
    assert crm.status == "pending" and crm.reclaims == 0
    erased = len(scripts["crm"].erased_keys)
    assert erased < 8
    with rt.transaction() as session:
        handed = [json.loads(d) for d in session.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "task.result_discarded"))]
    assert [h["result"]["deleted"] for h in handed] == [erased]
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as again:
        assert again.wait_until_idle(20)
    assert status(rt, request_id) == "completed"
    assert scripts["crm"].records[ALICE] == []


def test_dsar_worker_runs_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / "instance")
    request_id = instance.submit("access", instance.info.emails[0])
    proc = subprocess.Popen([DSAR, "worker", "--grace", "5"], env=instance.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: instance.show(request_id)["status"] == "completed", 30)
        later = instance.submit("erasure", instance.info.emails[1])  # found by its poll
        wait_for(lambda: instance.show(later)["status"] == "completed", 30)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "SIGTERM received" in out or "stopped" in out
    instance.audit_verify()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_listener_skips_its_own_runtimes_notifications(
        make_app: Callable[..., Flask]) -> None:
    """Its own commits already woke it through the local callbacks; another
    runtime's say whether tasks, mail or both became runnable."""
    from dsar.wakeup import Listener

    rt = make_app(None).extensions["dsar"]
    heard: list[tuple[bool, bool]] = []
    listener = Listener(rt, lambda tasks, mail: heard.append((tasks, mail)))
    listener._heard(f"{rt.wake_sender}:tm")
    listener._heard("someone-else:t")
    listener._heard("someone-else:m")
    listener._heard("")  # a hand-made NOTIFY: wake for both
    assert heard == [(True, False), (False, True), (True, True)]
