"""Time is an input: every rule reads the runtime's clock, so a test moves
it instead of sleeping, and what is stored follows it (the deadline, the
audit trail's times, the models' defaults)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import AuditEvent, Request, Task
from dsar.runtime import Runtime
from dsar.workflow import lease, verification
from dsar.workflow import requests as flow

#: late on the last day of a 31-day month, in a leap year
RECEIVED = datetime(2028, 1, 31, 23, 59, 30, tzinfo=UTC)


def test_a_new_request_stores_the_clocks_times(rt: Runtime) -> None:
    rt.clock = MovableClock(RECEIVED)
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        request_id = request.id
    with rt.transaction() as session:
        stored = session.get(Request, request_id)
        assert stored is not None
        assert stored.received_at == RECEIVED
        assert stored.due_at == datetime(2028, 2, 29, 23, 59, 30, tzinfo=UTC)  # the stored one
        assert stored.identifiers[0].added_at == RECEIVED  # a column default
        times = list(session.scalars(select(AuditEvent.occurred_at)))
        assert times == [RECEIVED]


def test_a_code_expires_when_the_clock_passes_its_lifetime(rt: Runtime) -> None:
    clock = rt.clock = MovableClock(RECEIVED)
    ttl = float(rt.settings["CODE_TTL_SECONDS"])
    with rt.transaction() as session:
        started = verification.receive(session, rt, "access", "a@example.org")
        request_id = started.request.id
    clock.advance(seconds=ttl)
    with rt.transaction() as session:
        request = flow.get(session, request_id)
        with pytest.raises(verification.CodeExpired):
            verification.check(session, rt, request, "000000")


def test_a_lease_is_taken_over_when_the_clock_passes_it(rt: Runtime) -> None:
    clock = rt.clock = MovableClock(RECEIVED)
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
    assert lease.claim(rt, "w:first") is not None
    assert lease.claim(rt, "w:second") is None  # its lease is live
    clock.advance(seconds=lease.lease_seconds(rt) - 0.001)
    assert lease.claim(rt, "w:second") is None
    clock.advance(timedelta(milliseconds=2))
    assert lease.claim(rt, "w:second") is not None
    with rt.transaction() as session:
        task = session.scalars(select(Task)).one()
        assert (task.lease_owner, task.reclaims, task.not_before) == ("w:second", 1, RECEIVED)


def test_durations_move_with_the_clock() -> None:
    frozen = MovableClock(RECEIVED)
    before = frozen.monotonic()
    assert frozen.monotonic() == before  # frozen: no time passes by itself
    frozen.advance(seconds=90)
    assert frozen.monotonic() - before == 90
    ticking = MovableClock()
    start = ticking.monotonic()
    ticking.advance(minutes=1)
    assert 60 <= ticking.monotonic() - start < 70
