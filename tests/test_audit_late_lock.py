"""The audit head is locked late: a transaction's events are chained when it
commits (or before its next query), not when they are recorded."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from dsar import audit
from dsar.models import AuditEvent, AuditHead
from dsar.runtime import Runtime


def events(rt: Runtime) -> list[tuple[int, str]]:
    with rt.transaction() as session:
        return [(e.seq, e.action) for e in session.scalars(
            select(AuditEvent).order_by(AuditEvent.seq))]


def test_a_query_in_the_transaction_sees_its_events(rt: Runtime) -> None:
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.one", actor="t")
        audit.record(session, rt.crypto, "test.two", actor="t")
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
        audit.record(session, rt.crypto, "test.three", actor="t")
    assert events(rt) == [(1, "test.one"), (2, "test.two"), (3, "test.three")]
    with rt.transaction() as session:
        assert audit.verify(session, rt.crypto) == audit.Verification(True, 3)


def test_a_rolled_back_savepoint_takes_its_event_the_outer_keeps_its_own(rt: Runtime) -> None:
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.outer", actor="t")
        nested = session.begin_nested()
        audit.record(session, rt.crypto, "test.inner", actor="t")
        nested.rollback()
    assert events(rt) == [(1, "test.outer")]
    with rt.transaction() as session:
        assert audit.verify(session, rt.crypto).ok


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_recording_does_not_hold_the_head_until_commit(rt: Runtime) -> None:
    """Another transaction appends and commits while this one has recorded
    but not committed; this one's events follow it in the chain."""
    other_done = threading.Event()

    def other() -> None:
        with rt.transaction() as session:
            audit.record(session, rt.crypto, "test.other", actor="t")
        other_done.set()

    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.first", actor="t")
        thread = threading.Thread(target=other)
        thread.start()
        assert other_done.wait(10), "the other append waited for this transaction"
        audit.record(session, rt.crypto, "test.second", actor="t")
    thread.join(10)
    assert events(rt) == [(1, "test.other"), (2, "test.first"), (3, "test.second")]
    with rt.transaction() as session:
        assert audit.verify(session, rt.crypto) == audit.Verification(True, 3)
        head = session.get(AuditHead, audit.HEAD_ID)
        assert head is not None and head.seq == 3


def test_nothing_is_appended_without_a_commit(rt: Runtime) -> None:
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.kept", actor="t")
    session = rt.sessionmaker()
    try:
        audit.record(session, rt.crypto, "test.dropped", actor="t")
    finally:
        session.close()  # never committed
    with rt.transaction() as session:
        audit.record(session, rt.crypto, "test.after", actor="t")
    assert events(rt) == [(1, "test.kept"), (2, "test.after")]
