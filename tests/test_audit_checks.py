"""Checks of the audit chain with a sealed record (dsar.audit_checks): the
incremental check starts where the last intact one ended and cannot be moved
past an edit; the scheduled full check finds an edit behind that point; the
CLI's head and verify refuse what does not hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select, text, update

from dsar import audit, audit_checks
from dsar.clock import MovableClock
from dsar.executor import housekeeping_chores
from dsar.models import AuditCheck, AuditEvent, Request
from dsar.runtime import Runtime

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EDITED = "content does not match its hash (edited)"


@pytest.fixture
def clock(rt: Runtime) -> MovableClock:
    rt.clock = MovableClock(T0)
    return rt.clock


def append(rt: Runtime, count: int) -> None:
    for index in range(count):
        with rt.transaction() as session:
            audit.record(session, rt.crypto, "test.event", actor="tester",
                         details={"n": index})


def check(rt: Runtime, kind: str = audit_checks.INCREMENTAL) -> AuditCheck:
    with rt.transaction() as session:
        check_id = audit_checks.ask(session, kind, actor="officer:o1").id
    return audit_checks.run(rt, check_id)


def edit(rt: Runtime, seq: int) -> None:
    """Change an event's details in place, as someone with database access could."""
    with rt.engine.begin() as connection:
        connection.execute(update(AuditEvent).where(AuditEvent.seq == seq)
                           .values(details='{"n":999}'))


def events_of(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.transaction() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                               .order_by(AuditEvent.seq)).all()
        session.expunge_all()
        return list(rows)


def test_the_first_check_walks_the_whole_chain_and_seals_where_it_ended(
        rt: Runtime, clock: MovableClock) -> None:
    append(rt, 4)
    done = check(rt)
    assert (done.kind, done.ok, done.from_seq, done.to_seq, done.bad_seq) == \
        ("full", True, 1, 4, None)
    with rt.transaction() as session:
        assert done.to_hash == session.get_one(AuditEvent, 4).hash
        stored = session.get_one(AuditCheck, done.id)
        assert audit_checks.sealed(rt.crypto, stored)
        assert stored.started_at == stored.finished_at == T0
    [event] = events_of(rt, "audit.checked")
    assert (event.seq, event.actor) == (5, "officer:o1")
    assert '"intact":true' in event.details and '"to":4' in event.details


def test_an_incremental_check_starts_after_the_point_the_last_one_reached(
        rt: Runtime, clock: MovableClock) -> None:
    append(rt, 3)
    first = check(rt)  # events 1-3, then its own audit.checked is event 4
    append(rt, 2)
    second = check(rt)
    assert (second.kind, second.ok, second.from_seq, second.to_seq) == \
        ("incremental", True, first.to_seq + 1, 6)


def test_an_edit_behind_the_checked_point_is_found_by_the_scheduled_full_check(
        make_app: Callable[..., Flask]) -> None:
    rt: Runtime = make_app(AUDIT_FULL_CHECK_HOURS=24).extensions["dsar"]
    clock = rt.clock = MovableClock(T0)
    append(rt, 5)
    check(rt)
    edit(rt, 2)
    append(rt, 1)
    unseen = check(rt)  # the edit is before where it starts: it cannot see it
    assert (unseen.kind, unseen.ok) == ("incremental", True)
    with rt.transaction() as session:
        assert audit_checks.ask_due_full(session, 24, now=clock.now()) is None  # asked at T0
    clock.advance(timedelta(hours=24, seconds=1))
    housekeeping_chores(rt)
    with rt.transaction() as session:
        found = audit_checks.state(session, rt.crypto).last
    assert found is not None
    assert (found.kind, found.requested_by, found.ok, found.bad_seq, found.problem) == \
        ("full", "system", False, 2, EDITED)
    assert found.to_seq == 1  # the last event found intact


def test_a_moved_checked_point_is_refused_and_the_next_check_walks_everything(
        rt: Runtime, clock: MovableClock) -> None:
    append(rt, 5)
    first = check(rt)
    edit(rt, 2)
    append(rt, 2)
    with rt.transaction() as session:  # move the point past the edit, without the key
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert last is not None
        session.execute(update(AuditCheck).where(AuditCheck.id == first.id)
                        .values(to_seq=last.seq, to_hash=last.hash))
    with rt.transaction() as session:
        assert not audit_checks.state(session, rt.crypto).seal_ok
    refused = check(rt)
    assert (refused.ok, refused.from_seq, refused.bad_seq) == (False, None, None)
    assert refused.problem is not None and "does not match its seal" in refused.problem
    after = check(rt)
    assert (after.kind, after.from_seq, after.ok, after.bad_seq) == ("full", 1, False, 2)


def test_after_a_broken_check_an_incremental_one_walks_the_whole_chain(
        rt: Runtime, clock: MovableClock) -> None:
    append(rt, 3)
    edit(rt, 3)
    broken = check(rt)
    assert (broken.ok, broken.bad_seq) == (False, 3)
    again = check(rt, audit_checks.INCREMENTAL)
    assert (again.kind, again.from_seq, again.bad_seq) == ("full", 1, 3)


def test_a_checked_point_whose_event_was_replaced_is_reported(
        rt: Runtime, clock: MovableClock) -> None:
    append(rt, 3)
    first = check(rt)
    edit(rt, first.to_seq or 0)
    result = check(rt)
    assert (result.kind, result.ok, result.bad_seq) == ("incremental", False, 3)
    assert result.problem == f"event 3: {EDITED}"


def test_asking_twice_before_the_housekeeper_runs_asks_once_and_full_wins(
        rt: Runtime, clock: MovableClock) -> None:
    with rt.transaction() as session:
        first = audit_checks.ask(session, "incremental", actor="officer:a")
        second = audit_checks.ask(session, "full", actor="officer:b")
        assert second.id == first.id and second.kind == "full"
        with pytest.raises(ValueError, match="unknown kind"):
            audit_checks.ask(session, "partial", actor="officer:a")
        waiting = audit_checks.state(session, rt.crypto).waiting
        assert waiting is not None and waiting.id == first.id
    assert audit_checks.run_asked(rt) == 1
    assert audit_checks.run_asked(rt) == 0  # nothing more asked for (no schedule here)


def test_the_scheduled_full_check_is_asked_for_every_setting_hours_and_never_at_zero(
        rt: Runtime, clock: MovableClock) -> None:
    with rt.transaction() as session:
        assert audit_checks.ask_due_full(session, 0, now=clock.now()) is None
        scheduled = audit_checks.ask_due_full(session, 6, now=clock.now())
        assert scheduled is not None and (scheduled.kind, scheduled.requested_by) == \
            ("full", "system")
    audit_checks.run(rt, scheduled.id)
    with rt.transaction() as session:
        assert audit_checks.ask_due_full(session, 6, now=T0 + timedelta(hours=5)) is None
        assert audit_checks.ask_due_full(session, 6, now=T0 + timedelta(hours=6, seconds=1))


# --- the CLI --------------------------------------------------------------------------

def test_audit_head_is_printed_only_when_its_seal_holds(
        rt: Runtime, cli: Callable[..., Result]) -> None:
    assert cli("audit", "head").output.strip() == f"0:{audit.GENESIS_HASH}"
    append(rt, 2)
    with rt.transaction() as session:
        good = audit.head(session)
    assert cli("audit", "head").output.strip() == f"2:{good['hash']}"
    with rt.engine.begin() as connection:
        connection.execute(text("UPDATE audit_heads SET seq = 1"))
    refused = cli("audit", "head")
    assert refused.exit_code == 1
    assert "NOT printed: the head's seal does not match" in refused.output
    assert good["hash"] not in refused.output


def test_audit_head_naming_an_event_that_is_gone_is_not_printed(
        rt: Runtime, cli: Callable[..., Result]) -> None:
    append(rt, 2)
    with rt.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    refused = cli("audit", "head")
    assert refused.exit_code == 1 and "event 2 is missing" in refused.output


def test_audit_verify_reports_request_rows_the_chain_does_not_account_for(
        rt: Runtime, cli: Callable[..., Result]) -> None:
    with rt.transaction() as session:
        for request_id, status in (("a" * 32, "received"), ("b" * 32, "verified"),
                                   ("c" * 32, "verified"), ("d" * 32, "completed")):
            session.add(Request(id=request_id, kind="access", status=status,
                                due_at=T0 + timedelta(days=30)))
        for request_id, action in (("a" * 32, "request.received"),
                                   ("b" * 32, "request.received"),
                                   ("b" * 32, "request.verified"),
                                   ("c" * 32, "request.received"),
                                   ("d" * 32, "request.completed")):
            audit.record(session, rt.crypto, action, actor="system", request_id=request_id)
    with rt.transaction() as session:
        session.add(Request(id="e" * 32, kind="erasure", status="received",
                            due_at=T0 + timedelta(days=30)))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "audit chain intact: 5 events" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("request ")]
    assert lines == [
        f"request {'c' * 32} (verified): no request.verified event for the state it is in",
        f"request {'d' * 32} (completed): no request.received event",
        f"request {'e' * 32} (received): no events at all"]


def test_audit_verify_says_every_request_is_accounted_for(
        rt: Runtime, cli: Callable[..., Result]) -> None:
    with rt.transaction() as session:
        session.add(Request(id="a" * 32, kind="access", status="received",
                            due_at=T0 + timedelta(days=30)))
        audit.record(session, rt.crypto, "request.received", actor="requester",
                     request_id="a" * 32)
    result = cli("audit", "verify")
    assert result.exit_code == 0
    assert "every request has the events its state implies" in result.output


def test_a_check_walks_a_snapshot_and_never_holds_writers_back(
        rt: Runtime, clock: MovableClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full check over a million events takes a minute: events appended
    meanwhile must neither wait for it (SQLite has one writer) nor make it
    report a head beyond the events it walked."""
    append(rt, 3)
    original, wrote = audit._check_event, []

    def append_meanwhile(event: AuditEvent, *args: object) -> str:
        if event.seq == 2 and not wrote:
            writer = threading.Thread(target=append, args=(rt, 2))
            started = time.monotonic()
            writer.start()
            writer.join(10)
            wrote.append(time.monotonic() - started)
        return original(event, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "_check_event", append_meanwhile)
    done = check(rt, audit_checks.FULL)
    assert wrote and wrote[0] < 2, "a write waited for the check"
    assert (done.ok, done.to_seq, done.problem) == (True, 3, None)
    with rt.transaction() as session:
        assert audit.verify(session, rt.crypto).ok


# --- the head and the point a check starts from, exactly ------------------------------

def test_check_head_names_what_is_wrong_with_the_head(rt: Runtime) -> None:
    def problem() -> str:
        with rt.transaction() as session:
            return audit.check_head(session, rt.crypto)

    assert problem() == ""  # the empty chain's head
    with rt.engine.begin() as connection:
        connection.execute(text("UPDATE audit_heads SET hash = :h"), {"h": "f" * 64})
    assert problem() == "the empty head names another hash"
    with rt.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_heads"))
    assert problem() == "the sealed head is missing"


def test_verify_after_a_point_reports_that_point_and_where_it_stopped(rt: Runtime) -> None:
    append(rt, 3)
    with rt.transaction() as session:
        third = session.get_one(AuditEvent, 3).hash
        assert audit.verify(session, rt.crypto, after=(2, "0" * 64)) == audit.Verification(
            False, 0, 2, "event 2 has another hash than the one recorded for it")
        whole = audit.verify(session, rt.crypto, {5: "f" * 64})
    assert (whole.ok, whole.bad_seq, whole.last_seq, whole.last_hash) == (False, 5, 3, third)
