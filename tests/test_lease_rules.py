"""A task's lease, as a table: TASK_LEASE_SECONDS (10 s) from its claim or
its last renewal, then any worker may take it over (a reclaim: counted, not an
attempt). The runtime's clock is moved, never slept past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import Task
from dsar.runtime import Runtime
from dsar.workflow import lease
from dsar.workflow import requests as flow

CLAIMED = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)

ROWS = [
    # another worker tries after     renewed after   taken over
    (timedelta(0), None, False),
    (timedelta(seconds=10) - US, None, False),
    (timedelta(seconds=10), None, False),
    (timedelta(seconds=10) + US, None, True),
    (timedelta(hours=1), None, True),
    (timedelta(seconds=12), timedelta(seconds=8), False),
    (timedelta(seconds=18), timedelta(seconds=8), False),
    (timedelta(seconds=18) + US, timedelta(seconds=8), True),
]


def _ids() -> list[str]:
    return [f"tried after {after}" + (f", renewed after {renewed}" if renewed else "")
            for after, renewed, _ in ROWS]


@pytest.mark.parametrize(("after", "renewed", "taken"), ROWS, ids=_ids())
def test_a_lease_lives_ten_seconds_from_its_last_renewal(
        rt: Runtime, after: timedelta, renewed: timedelta | None, taken: bool) -> None:
    rt.settings["TASK_LEASE_SECONDS"] = 10.0  # the default (the test apps' is longer)
    clock = rt.clock = MovableClock(CLAIMED)
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
    task_id = lease.claim(rt, "w:first")
    assert task_id is not None
    if renewed is not None:
        clock.advance(renewed)
        lease.renew(rt, task_id, "w:first")
        clock.advance(after - renewed)
    else:
        clock.advance(after)
    assert (lease.claim(rt, "w:second") == task_id) is taken
    with rt.transaction() as session:
        task = session.scalars(select(Task).where(Task.id == task_id)).one()
        expected = ("w:second", 1, 1) if taken else ("w:first", 1, 0)
        assert (task.lease_owner, task.attempts, task.reclaims) == expected
    if taken:
        with pytest.raises(lease.LeaseLost):
            lease.renew(rt, task_id, "w:first")  # the first worker's result is void


def test_each_take_over_adds_one_reclaim(rt: Runtime) -> None:
    """TASK_MAX_RECLAIMS counts take-overs: a task whose workers keep dying is
    taken over again and again, one more each time."""
    rt.settings["TASK_LEASE_SECONDS"] = 10.0
    clock = rt.clock = MovableClock(CLAIMED)
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
    task_id = lease.claim(rt, "w:0")
    for n in range(1, 4):
        clock.advance(seconds=11)
        assert lease.claim(rt, f"w:{n}") == task_id
        with rt.transaction() as session:
            assert session.get_one(Task, task_id).reclaims == n
