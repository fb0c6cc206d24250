"""dsar/workflow/preview.py's stored preview (the console's): which requests are due
(:func:`preview.due`), computing and storing them (:func:`preview.refresh`,
:func:`preview.compute`, run by housekeeping), and an officer asking again
(:func:`preview.ask_again`). Named test_mutants_* so `make mutate` runs it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from dsar.clock import MovableClock
from dsar.connector import Subject
from dsar.executor import housekeeping_chores
from dsar.models import AuditEvent, ErasurePreview, Request
from dsar.runtime import Runtime
from dsar.workflow import preview
from dsar.workflow import requests as flow
from tests.support.engine_connectors import TYPES, Script, ScriptedConnector

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Exploding(ScriptedConnector):
    """A connector with a bug: its plan raises something no contract names."""

    def plan_erasure(self, subject: Subject) -> object:  # type: ignore[override]
        raise KeyError("alice@example.org")


@pytest.fixture
def rt(make_app: Callable[..., Flask], scripts: dict[str, Script],
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setitem(TYPES, "exploding", Exploding)
    for name in ("crm", "bug"):
        scripts[name] = Script()
    scripts["crm"].seed(ALICE, 3)
    scripts["crm"].holds = {f"{ALICE}-0"}
    scripts["crm"].seed(BOB, 1)
    app = make_app({"crm": {"type": "scripted", "script": "crm"},
                    "bug": {"type": "exploding", "script": "bug"}}, ERASURE_REVIEW=True)
    runtime: Runtime = app.extensions["dsar"]
    runtime.clock = MovableClock(START)
    yield runtime


def clock(rt: Runtime) -> MovableClock:
    assert isinstance(rt.clock, MovableClock)
    return rt.clock


def submit(rt: Runtime, email: str, kind: str = "erasure", review: bool = True) -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [email]})
        if review:
            flow.mark_verified(session, rt, request, actor="test", method="test")
        return request.id


def stored(rt: Runtime, request_id: str) -> ErasurePreview | None:
    with rt.transaction() as session:
        found = session.get(ErasurePreview, request_id)
        session.expunge_all()
        return found


def events(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.transaction() as session:
        found = list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                     .order_by(AuditEvent.seq)))
        session.expunge_all()
        return found


def set_times(rt: Runtime, request_id: str, requested: datetime,
              computed: datetime | None) -> None:
    with rt.transaction() as session:
        row = session.get(ErasurePreview, request_id)
        if row is None:
            row = ErasurePreview(request_id=request_id, requested_at=requested,
                                 requested_by="system")
            session.add(row)
        row.requested_at, row.computed_at = requested, computed


def due(rt: Runtime, limit: int = preview.REFRESH_BATCH) -> list[str]:
    with rt.transaction() as session:
        return preview.due(session, limit)


def test_due_erasures_awaiting_review_only_the_longest_waiting_first(rt: Runtime) -> None:
    first = submit(rt, ALICE)
    clock(rt).advance(seconds=1)
    second = submit(rt, BOB)
    submit(rt, CAROL, review=False)  # received, not yet under review
    submit(rt, ALICE, kind="access")  # an access request is never reviewed
    assert due(rt) == [first, second]
    assert due(rt, limit=1) == [first]
    assert preview.REFRESH_BATCH == 10


def test_due_again_only_when_asked_after_it_was_computed(rt: Runtime) -> None:
    request_id = submit(rt, ALICE)
    set_times(rt, request_id, START, None)
    assert due(rt) == [request_id]
    set_times(rt, request_id, START, START)
    assert due(rt) == []
    set_times(rt, request_id, START, START + timedelta(seconds=1))
    assert due(rt) == []
    set_times(rt, request_id, START + timedelta(seconds=1), START)
    assert due(rt) == [request_id]


def test_refresh_stores_each_stores_preview_with_its_time_and_one_event(
        rt: Runtime, scripts: dict[str, Script], caplog: pytest.LogCaptureFixture) -> None:
    request_id = submit(rt, ALICE)
    clock(rt).advance(minutes=5)
    with caplog.at_level(logging.ERROR):
        assert preview.refresh(rt) == 1
    row = stored(rt, request_id)
    assert row is not None
    assert (row.computed_at, row.requested_at, row.requested_by, row.identifiers) == (
        START + timedelta(minutes=5), START + timedelta(minutes=5), "system", 1)
    assert json.loads(row.stores or "") == [
        {"connector": "bug", "error": "unexpected KeyError in the connector (a bug: see the "
                                      "worker's log)"},
        {"connector": "crm", "summary": {"delete": 2, "mask": 0, "keep": 1},
         "groups": [{"collection": "items", "action": "delete", "detail": "", "records": 2},
                    {"collection": "items", "action": "keep",
                     "detail": "tax-law: invoices kept 10 years", "records": 1}]}]
    assert [r.getMessage() for r in caplog.records] == [
        "erasure preview: connector bug raised KeyError"]
    [event] = events(rt, "erasure.previewed")
    assert (event.actor, event.request_id) == ("system", request_id)
    assert json.loads(event.details) == {
        "identifiers": 1, "requested_by": "system",
        "connectors": {"bug": "unexpected KeyError in the connector (a bug: see the worker's "
                              "log)", "crm": {"delete": 2, "mask": 0, "keep": 1}}}
    assert preview.refresh(rt) == 0  # stored: nothing due, nothing run
    assert len(events(rt, "erasure.previewed")) == 1
    assert scripts["crm"].calls == ["find"]


def test_asking_again_computes_again_from_the_later_time(rt: Runtime) -> None:
    request_id = submit(rt, ALICE)
    preview.refresh(rt)
    clock(rt).advance(minutes=1)
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        preview.ask_again(session, rt, request, actor="officer:kim")
    row = stored(rt, request_id)
    assert row is not None
    assert (row.requested_at, row.requested_by, row.computed_at) == (
        START + timedelta(minutes=1), "officer:kim", START)
    [asked] = events(rt, "erasure.preview_requested")
    assert (asked.actor, asked.request_id, json.loads(asked.details)) == (
        "officer:kim", request_id, {})
    clock(rt).advance(minutes=1)
    assert preview.refresh(rt) == 1
    row = stored(rt, request_id)
    assert row is not None
    assert (row.computed_at, row.requested_by) == (START + timedelta(minutes=2), "officer:kim")
    last = events(rt, "erasure.previewed")[-1]
    assert json.loads(last.details)["requested_by"] == "officer:kim"


def test_asking_before_any_preview_makes_the_row(rt: Runtime) -> None:
    request_id = submit(rt, ALICE)
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        preview.ask_again(session, rt, request, actor="officer:kim")
    row = stored(rt, request_id)
    assert row is not None
    assert (row.requested_at, row.requested_by, row.computed_at, row.stores) == (
        START, "officer:kim", None, None)
    assert due(rt) == [request_id]


@pytest.mark.parametrize("kind, review", [("access", True), ("erasure", False)])
def test_only_an_erasure_awaiting_review_may_be_asked_again(rt: Runtime, kind: str,
                                                           review: bool) -> None:
    request_id = submit(rt, ALICE, kind=kind, review=review)
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        with pytest.raises(ValueError) as refused:
            preview.ask_again(session, rt, request, actor="officer:kim")
    assert str(refused.value) == "only an erasure awaiting review has a preview to compute"
    assert stored(rt, request_id) is None
    assert events(rt, "erasure.preview_requested") == []


def test_one_failing_request_does_not_stop_the_others(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    broken = submit(rt, ALICE)
    clock(rt).advance(seconds=1)
    fine = submit(rt, BOB)
    real = preview.compute

    def compute(runtime: Runtime, request_id: str) -> None:
        if request_id == broken:
            raise RuntimeError("alice@example.org")
        real(runtime, request_id)

    monkeypatch.setattr(preview, "compute", compute)
    with caplog.at_level(logging.ERROR):
        assert preview.refresh(rt) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"erasure preview of request {broken} not computed (RuntimeError)",
        "erasure preview: connector bug raised KeyError"]
    assert stored(rt, broken) is None
    fine_row = stored(rt, fine)
    assert fine_row is not None and fine_row.computed_at is not None


def test_the_app_database_away_is_raised_not_swallowed(rt: Runtime,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    submit(rt, ALICE)

    def away(_rt: Runtime, _request_id: str) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(preview, "compute", away)
    with pytest.raises(OperationalError):
        preview.refresh(rt)


def test_a_request_gone_meanwhile_is_skipped(rt: Runtime) -> None:
    preview.compute(rt, "0" * 32)
    assert events(rt, "erasure.previewed") == []


def test_housekeeping_computes_the_due_previews(rt: Runtime) -> None:
    request_id = submit(rt, ALICE)
    housekeeping_chores(rt)
    row = stored(rt, request_id)
    assert row is not None and row.computed_at == START


def test_refresh_computes_at_most_its_limit_the_longest_waiting_first(rt: Runtime) -> None:
    first = submit(rt, ALICE)
    clock(rt).advance(seconds=1)
    second = submit(rt, BOB)
    assert preview.refresh(rt, limit=1) == 1
    assert stored(rt, first) is not None and stored(rt, second) is None
    assert preview.refresh(rt) == 1
    assert stored(rt, second) is not None
