"""The state machine: every (from, to) pair, and the audit event that goes with it."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from dsar.models import AuditEvent
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow.states import TRANSITIONS, IllegalTransition, Status, transition

ALLOWED = {
    ("received", "verifying"), ("received", "verified"), ("received", "expired"),
    ("received", "cancelled"),
    ("verifying", "verified"), ("verifying", "expired"), ("verifying", "cancelled"),
    ("verified", "awaiting_review"), ("verified", "processing"), ("verified", "cancelled"),
    ("awaiting_review", "approved"), ("awaiting_review", "denied"),
    ("awaiting_review", "cancelled"),
    ("approved", "processing"), ("approved", "cancelled"),
    ("processing", "completed"), ("processing", "partially_failed"),
    ("processing", "cancelled"),
    ("partially_failed", "processing"), ("partially_failed", "cancelled"),
    # the clock paused while waiting for the requester, and resumed to where it was
    ("received", "paused"), ("verifying", "paused"), ("awaiting_review", "paused"),
    ("paused", "received"), ("paused", "verifying"), ("paused", "awaiting_review"),
    ("paused", "cancelled"),
}
PAIRS = list(itertools.product([s.value for s in Status], repeat=2))


def test_table_is_the_documented_one() -> None:
    table = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == ALLOWED


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair(rt: Runtime, current: str, target: str) -> None:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        request.status = current
        before = session.scalar(select(func.count()).select_from(AuditEvent))
        if (current, target) in ALLOWED:
            transition(session, rt.crypto, request, Status(target), actor="test")
            assert request.status == target
            event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
            assert event is not None and event.action == f"request.{target}"
            assert event.request_id == request.id
        else:
            with pytest.raises(IllegalTransition):
                transition(session, rt.crypto, request, Status(target), actor="test")
            assert request.status == current
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_event_rolls_back_with_the_transition(rt: Runtime) -> None:
    with rt.transaction() as session:
        request_id = flow.submit(session, rt, "access", {"email": ["a@example.org"]}).id
    with pytest.raises(RuntimeError), rt.transaction() as session:
        request = flow.get(session, request_id)
        transition(session, rt.crypto, request, Status.CANCELLED, actor="test", reason="x")
        raise RuntimeError("the request edge fails after the change")
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == "received"
        actions = session.scalars(select(AuditEvent.action)).all()
        assert actions == ["request.received"]


def test_final_states_stamp_closed_at_and_keep_reason(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": ["a@example.org"]})
        transition(session, rt.crypto, request, Status.CANCELLED, actor="test",
                   reason="requester withdrew")
        assert request.closed_at is not None
        assert request.status_reason == "requester withdrew"
