"""Small rules `make mutate` found loose: the last retry allowed is the one landing exactly
at the give-up time, the refusals' messages, a part writer's abort being safe twice, the
verification's time stamp and a task move's defaults (the system, no retry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import AuditEvent, Task
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow import retry
from dsar.workflow.parts import PartWriter
from dsar.workflow.states import IllegalTransition, Status, transition
from dsar.workflow.subjects import add_identifiers, subject_of
from dsar.workflow.task_states import IllegalTaskMove, TaskStatus, move

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


class Settings:
    settings = {"TASK_RETRY_SECONDS": 60.0, "TASK_RETRY_MAX_DELAY_SECONDS": 3600.0,
                "TASK_RETRY_WINDOW_HOURS": 1.0, "TASK_RETRY_DUE_MARGIN_DAYS": 2.0}


@pytest.mark.parametrize(("retrying_for", "expected"), [
    (timedelta(minutes=58), NOW + timedelta(seconds=60)),
    (timedelta(minutes=59), NOW + timedelta(seconds=60)),  # lands on the window's end
    (timedelta(minutes=59, microseconds=1), None),
], ids=["within the window", "exactly at its end", "a microsecond past it"])
def test_a_retry_may_land_on_the_give_up_time_but_not_after(
        monkeypatch: pytest.MonkeyPatch, retrying_for: timedelta,
        expected: datetime | None) -> None:
    monkeypatch.setattr(retry.random, "uniform", lambda _low, high: high)  # no jitter
    rt: Any = Settings()
    task = Task(attempts=1, retrying_since=NOW - retrying_for)
    assert retry.next_try(rt, task, NOW + timedelta(days=30), NOW) == expected


def test_a_retry_may_land_on_the_due_margin_but_not_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.random, "uniform", lambda _low, high: high)
    rt: Any = Settings()
    due = NOW + timedelta(days=2, seconds=60)
    assert retry.next_try(rt, Task(attempts=1), due, NOW) == NOW + timedelta(seconds=60)
    assert retry.next_try(rt, Task(attempts=1), due - timedelta(microseconds=1), NOW) is None


def test_refused_moves_name_both_states() -> None:
    assert str(IllegalTaskMove("succeeded", "running")) == \
        "a task that is succeeded cannot become running"
    assert str(IllegalTransition("completed", "processing")) == \
        "a request that is completed cannot become processing"


def test_aborting_a_part_twice_is_harmless(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, "r1", "crm", run="a")
    assert writer.tmp.is_dir()
    writer.abort()
    assert not writer.tmp.exists()
    writer.abort()  # e.g. a stop after the part was already given up
    assert not writer.final.exists()


def test_only_verification_stamps_verified_at(rt: Runtime) -> None:
    clock = rt.clock = MovableClock(NOW)
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": ["a@example.org"]})
        transition(session, rt.crypto, request, Status.VERIFYING, actor="system")
        assert request.verified_at is None
        clock.advance(minutes=5)
        transition(session, rt.crypto, request, Status.VERIFIED, actor="requester")
        assert request.verified_at == NOW + timedelta(minutes=5)
        clock.advance(minutes=5)
        transition(session, rt.crypto, request, Status.AWAITING_REVIEW, actor="system")
        assert request.verified_at == NOW + timedelta(minutes=5)


def test_a_task_move_is_the_systems_and_no_retry_unless_said(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        session.flush()
        task = session.scalars(select(Task).where(Task.request_id == request.id)).first()
        assert task is not None
        move(session, rt.crypto, task, TaskStatus.RUNNING)
        assert move(session, rt.crypto, task, TaskStatus.PENDING) is None  # a hand-back
        move(session, rt.crypto, task, TaskStatus.RUNNING)
        assert move(session, rt.crypto, task, TaskStatus.SUCCEEDED) == "task.succeeded"
    with rt.transaction() as session:
        actors = [e.actor for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action.startswith("task.")))]
    assert actors == ["system"]


def test_blank_and_known_identifiers_are_skipped_not_the_rest(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["a@example.org"]})
        added = add_identifiers(rt, request, {"email": ["", "a@example.org", "b@example.org",
                                                    "  ", "c@example.org"]},
                                source="connector:crm")
        assert [digest.split(":")[0] for digest in added] == ["email", "email"]
        assert sorted(subject_of(rt, request).values("email")) == [
            "a@example.org", "b@example.org", "c@example.org"]
        assert add_identifiers(rt, request, {"phone": ["+447700900001", "+447700900002"]},
                               source="connector:crm", limit=1) == \
            [f"phone:{rt.crypto.identifier_digest('phone', '+447700900001')}"]
