"""The task state machine: every (from, to) pair, which moves are outcomes
(an audit event) and which are not (claims, hand-backs, resets), and a claim
that never touches the audit chain."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dsar.database import utcnow
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import lease
from dsar.workflow import requests as flow
from dsar.workflow.task_states import (
    TASK_TRANSITIONS,
    IllegalTaskMove,
    Step,
    TaskStatus,
    move,
)
from tests.support.statements import counting

ALLOWED = {
    ("pending", "running"), ("pending", "cancelled"),
    ("running", "succeeded"), ("running", "failed"), ("running", "pending"),
    ("running", "running"), ("running", "cancelled"),
    ("succeeded", "pending"),
    ("failed", "pending"),
}
#: (from, to, retry) -> the audit action the move records, or None
OUTCOMES = {
    ("running", "succeeded", False): "task.succeeded",
    ("running", "failed", False): "task.failed",
    ("running", "cancelled", False): "task.cancelled",
    ("pending", "cancelled", False): "task.cancelled",
    ("running", "pending", True): "task.retry_scheduled",
    ("running", "pending", False): None,  # released or handed back
    ("pending", "running", False): None,  # claimed
    ("running", "running", False): None,  # taken over after its lease ran out
    ("failed", "pending", False): None,  # reset by an officer's retry
    ("succeeded", "pending", False): None,  # run again for a grown subject
}
PAIRS = list(itertools.product([s.value for s in TaskStatus], repeat=2))


def test_table_is_the_documented_one() -> None:
    table = {(a.value, b.value) for a, targets in TASK_TRANSITIONS.items() for b in targets}
    assert table == ALLOWED
    assert {(a, b) for a, b, _ in OUTCOMES} == ALLOWED


def _task(session: Session, rt: Runtime, status: str) -> Task:
    request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
    task = Task(request_id=request.id, connector="crm", step=Step.EXPORT.value,
                status=status, not_before=utcnow(), attempts=1)
    session.add(task)
    session.flush()
    return task


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair(rt: Runtime, current: str, target: str) -> None:
    with rt.transaction() as session:
        task = _task(session, rt, current)
        before = _count(session)
        if (current, target) not in ALLOWED:
            with pytest.raises(IllegalTaskMove):
                move(session, rt.crypto, task, TaskStatus(target))
            assert task.status == current
            assert _count(session) == before
            return
        for retry in (False, True):
            if (current, target, retry) not in OUTCOMES:
                continue
            task.status = current
            before = _count(session)
            action = move(session, rt.crypto, task, TaskStatus(target), actor="test",
                          retry=retry, details={"records": 3})
            assert task.status == target
            assert action == OUTCOMES[(current, target, retry)]
            if action is None:
                assert _count(session) == before
                continue
            event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
            assert event is not None and event.action == action and event.actor == "test"
            assert event.request_id == task.request_id
            assert json.loads(event.details) == {
                "task": task.id, "step": "export", "connector": "crm", "attempt": 1,
                "records": 3}


def test_a_claim_and_a_reclaim_never_touch_the_audit_chain(rt: Runtime) -> None:
    """Claiming runs in every worker's loop: it must not queue on the audit head."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        request_id = request.id
    with counting(rt.engine) as first:
        assert lease.claim(rt, "w:first") is not None
    with rt.transaction() as session:  # its worker died: the lease ran out
        session.execute(update(Task).where(Task.request_id == request_id).values(
            lease_expires_at=utcnow() - timedelta(seconds=1)))
    with counting(rt.engine) as second:
        assert lease.claim(rt, "w:second") is not None
    for seen in (first, second):
        assert not [s for s in seen.data if "audit" in s.lower()], seen.data
    with rt.transaction() as session:
        task = session.scalars(select(Task).where(Task.request_id == request_id)).one()
        assert (task.status, task.lease_owner, task.attempts, task.reclaims) == (
            "running", "w:second", 1, 1)
