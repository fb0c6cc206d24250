"""Retries that outlast an outage: a window of time, not a count of attempts;
backoff with jitter and a cap; a margin before the due date; bugs and
permanent errors at once; officers told what a request is waiting for."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import Request, Task
from dsar.workflow import retry
from tests.connectors.test_sql_graph import DATASET, seed
from tests.support.engine_connectors import Script
from tests.support.workers import wait_for
from tests.test_engine import ALICE, process_on_the_clock, status, submit, tasks_of, two_stores

NOW = utcnow()


def policy(make_app: Callable[..., Flask], **config: Any) -> Any:
    return make_app(None, **config).extensions["dsar"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_backoff_doubles_with_jitter_up_to_the_cap(make_app: Callable[..., Flask]) -> None:
    rt = policy(make_app, TASK_RETRY_SECONDS=5.0, TASK_RETRY_MAX_DELAY_SECONDS=300.0)
    for attempts, full in ((1, 5), (2, 10), (3, 20), (7, 300), (60, 300)):
        delays = {retry.delay_seconds(rt, attempts) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays), (attempts, delays)
        assert len(delays) > 1, "no jitter"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_retries_stop_at_the_window_or_before_the_due_date(
        make_app: Callable[..., Flask]) -> None:
    rt = policy(make_app, TASK_RETRY_SECONDS=5.0, TASK_RETRY_WINDOW_HOURS=48.0,
                TASK_RETRY_DUE_MARGIN_DAYS=3.0)
    far = NOW + timedelta(days=30)
    assert retry.give_up_at(rt, NOW, far) == NOW + timedelta(hours=48)
    near = NOW + timedelta(days=4)
    assert retry.give_up_at(rt, NOW, near) == NOW + timedelta(days=1)
    task = Task(attempts=1, retrying_since=NOW - timedelta(hours=47, minutes=59, seconds=59))
    assert retry.next_try(rt, task, far, NOW) is None  # the next try would fall past the window
    task.retrying_since = NOW - timedelta(hours=1)
    assert retry.next_try(rt, task, far, NOW) is not None
    assert retry.next_try(rt, task, NOW + timedelta(days=3), NOW) is None  # inside the margin


def test_a_store_down_for_many_retries_completes_untouched(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """Twelve failures in a row (the old rule gave up after five attempts),
    with the default delays: the clock moves to each retry."""
    rt = make_app(two_stores(scripts), TASK_RETRY_SECONDS=5.0).extensions["dsar"]
    scripts["crm"].fail_times = 12
    request_id = submit(rt)
    process_on_the_clock(rt)
    assert status(rt, request_id) == "completed"
    crm = tasks_of(rt, request_id)[0]
    assert crm.attempts == 13 and crm.retrying_since is None


@pytest.mark.parametrize("error", [ValueError, KeyError])
def test_a_connector_bug_fails_at_once(make_app: Callable[..., Flask],
                                       scripts: dict[str, Script], error: type) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    scripts["crm"].fail_times, scripts["crm"].fail_with = 1, error
    request_id = submit(rt)
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)
    crm = tasks_of(rt, request_id)[0]
    assert (crm.status, crm.attempts) == ("failed", 1)
    assert f"unexpected {error.__name__}" in (crm.last_error or "")
    assert status(rt, request_id) == "partially_failed"


def test_a_store_that_answers_again_wakes_the_tasks_waiting_for_it(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    waiting, fresh = submit(rt), submit(rt)
    with rt.transaction() as session:  # the first request waits an hour for crm
        session.execute(update(Task).where(Task.request_id == waiting).values(
            retrying_since=utcnow() - timedelta(minutes=5), attempts=6,
            not_before=utcnow() + timedelta(hours=1)))
    started = time.monotonic()
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)  # crm answered the fresh request
    assert time.monotonic() - started < 30
    assert {status(rt, waiting), status(rt, fresh)} == {"completed"}


def next_try_at(rt: Any, request_id: str, when: Any) -> bool:
    """Set the next try of the request's waiting task; ``False`` while none waits."""
    with rt.transaction() as session:
        done = session.execute(update(Task).where(
            Task.request_id == request_id, Task.status == "pending",
            Task.retrying_since.is_not(None)).values(not_before=when))
        return bool(done.rowcount)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_store_outage_is_waited_out_and_shown_to_officers(
        make_app: Callable[..., Flask], restartable_pg: Any, cli: Callable[..., Any]) -> None:
    """A real PostgreSQL behind the sql connector, stopped for longer than
    the old five attempts lasted and started again: nobody acts, the request
    completes, and meanwhile officers read what it is waiting for."""
    seed(restartable_pg.url)
    app = make_app({"crm": {"type": "sql", **DATASET, "url": restartable_pg.url}},
                   TASK_RETRY_SECONDS=0.1, TASK_RETRY_MAX_DELAY_SECONDS=0.3)
    rt = app.extensions["dsar"]
    restartable_pg.stop()
    request_id = submit(rt, "access", ALICE)
    with InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        wait_for(lambda: tasks_of(rt, request_id)[0].attempts >= 8, 30)
        # hold the next try back (the clock moves, as it were) while officers look:
        # a retry running at that instant would not be "waiting"
        wait_for(lambda: next_try_at(rt, request_id, utcnow() + timedelta(hours=1)), 10)
        assert status(rt, request_id) == "processing"
        shown = cli("requests", "show", request_id, app_=app).output
        listed = cli("requests", "list", app_=app).output
        for output in (shown, listed):
            assert "waiting for store crm since " in output and ", next try at " in output
        restartable_pg.start()
        assert next_try_at(rt, request_id, utcnow())
        assert executor.wait_until_idle(30)
    assert status(rt, request_id) == "completed"
    crm = tasks_of(rt, request_id)[0]
    assert crm.record_count > 0 and crm.retrying_since is None
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None and request.closed_at is not None
