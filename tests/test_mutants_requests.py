"""dsar/workflow/requests.py, preview.py and erasure.py where `make mutate` found them
loose: what a cancellation does to the request's tasks and to no one else's, a denial's
reason, and the officer's erasure preview with the event it records (every connector's
counts, notes and errors by name)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.connector import Capability, Connector, RetryableError, Subject
from dsar.executor import InProcessExecutor
from dsar.models import AuditEvent, Request, Task
from dsar.runtime import Runtime
from dsar.workflow import erasure
from dsar.workflow import requests as flow
from dsar.workflow.deadlines import due_date
from dsar.workflow.preview import preview_erasure
from tests.support.engine_connectors import (
    TYPES,
    DiscoveringConnector,
    Script,
    ScriptedConnector,
)

ALICE, BOB = "alice@example.org", "bob@example.org"
START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def events(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.transaction() as session:
        found = list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                     .order_by(AuditEvent.seq)))
        session.expunge_all()
        return found


class FindOnly(ScriptedConnector):
    """A scripted store that can find but not erase (an archive)."""

    capabilities = frozenset({Capability.FIND})
    plan_erasure = Connector.plan_erasure
    erase = Connector.erase


class FailingDiscovery(DiscoveringConnector):
    """A discoverer whose store is down."""

    def discover(self, subject: Subject) -> dict[str, set[str]]:
        raise RetryableError("store unavailable (scripted)")


@pytest.fixture
def stores(make_app: Callable[..., Flask], scripts: dict[str, Script],
           monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """crm (erases, one record of Alice kept by a hold), archive (cannot erase), broken
    (fails every find), phones (takes phone numbers only), all under review."""
    monkeypatch.setitem(TYPES, "find-only", FindOnly)
    for name in ("crm", "archive", "broken", "phones"):
        scripts[name] = Script()
    scripts["crm"].seed(ALICE, 3)
    scripts["crm"].holds = {f"{ALICE}-0"}
    scripts["archive"].seed(ALICE, 2)
    scripts["crm"].seed(BOB, 1)
    app = make_app({
        "crm": {"type": "scripted", "script": "crm"},
        "archive": {"type": "find-only", "script": "archive"},
        "broken": {"type": "broken", "script": "broken"},
        "phones": {"type": "scripted", "script": "phones", "kinds": ["phone"]},
    }, ERASURE_REVIEW=True)
    return app.extensions["dsar"]  # type: ignore[no-any-return]


def awaiting_review(rt: Runtime, email: str) -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": [email]})
        flow.mark_verified(session, rt, request, actor="test", method="test")
        assert request.status == "awaiting_review"
        return request.id


def test_the_preview_shows_every_store_by_name_and_records_the_counts(
        stores: Runtime) -> None:
    request_id = awaiting_review(stores, ALICE)
    with stores.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        previews = preview_erasure(session, stores, request, actor="officer:kim")
    assert previews == [
        {"connector": "archive", "error": "2 records found but this connector cannot erase: "
                                          "erase them by hand, then retry"},
        {"connector": "broken",
         "error": "credentials refused by the store (scripted)"},
        {"connector": "crm", "summary": {"delete": 2, "mask": 0, "keep": 1},
         "groups": [{"collection": "items", "action": "delete", "detail": "", "records": 2},
                    {"collection": "items", "action": "keep",
                     "detail": "tax-law: invoices kept 10 years", "records": 1}]},
        {"connector": "phones", "note": "no identifiers of the kinds it accepts"},
    ]
    [event] = events(stores, "erasure.previewed")
    assert (event.actor, event.request_id) == ("officer:kim", request_id)
    assert json.loads(event.details) == {
        "identifiers": 1,
        "connectors": {"archive": previews[0]["error"], "broken": previews[1]["error"],
                       "crm": {"delete": 2, "mask": 0, "keep": 1}, "phones": ""},
    }


def test_a_store_that_cannot_erase_and_holds_nothing_says_so(stores: Runtime,
                                                             scripts: dict[str, Script]) -> None:
    archive = stores.connectors["archive"]
    subject = Subject({"email": [BOB]})
    assert erasure.preview(archive, subject) == {"note": "nothing found"}
    scripts["archive"].seed(BOB, 1)
    assert erasure.preview(archive, subject) == {
        "error": "1 records found but this connector cannot erase: erase them by hand, "
                 "then retry"}


def test_cancelling_cancels_this_requests_open_tasks_only(stores: Runtime) -> None:
    with stores.transaction() as session:
        mine = flow.submit(session, stores, "access", {"email": [ALICE]})
        other = flow.submit(session, stores, "access", {"email": [BOB]})
        for request in (mine, other):
            flow.mark_verified(session, stores, request, actor="test", method="test")
        mine_id, other_id = mine.id, other.id
    with stores.transaction() as session:  # one of its tasks ended already
        done = session.scalars(select(Task).where(Task.request_id == mine_id)
                               .order_by(Task.connector)).first()
        assert done is not None
        done.status, done_id = "succeeded", done.id
    with stores.transaction() as session:
        to_cancel = session.get(Request, mine_id)
        assert to_cancel is not None
        flow.cancel(session, stores, to_cancel, actor="officer:kim", reason="asked to stop")
    with stores.transaction() as session:
        mine_tasks = session.scalars(select(Task).where(Task.request_id == mine_id)).all()
        other_tasks = session.scalars(select(Task).where(Task.request_id == other_id)).all()
        assert mine_tasks and other_tasks
        assert {(t.status, t.lease_owner) for t in mine_tasks if t.id != done_id} == \
            {("cancelled", None)}
        assert [t.status for t in mine_tasks if t.id == done_id] == ["succeeded"]
        assert {t.status for t in other_tasks} == {"pending"}
        cancelled = session.get(Request, mine_id)
        assert cancelled is not None
        assert (cancelled.status, cancelled.status_reason) == ("cancelled", "asked to stop")
    [event] = events(stores, "request.cancelled")
    assert event.actor == "officer:kim"
    assert json.loads(event.details)["reason"] == "asked to stop"
    assert {e.actor for e in events(stores, "task.cancelled")} == {"officer:kim"}
    assert {e.request_id for e in events(stores, "task.cancelled")} == {mine_id}


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_denial_without_a_reason_is_refused(stores: Runtime, reason: str) -> None:
    request_id = awaiting_review(stores, ALICE)
    with stores.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        with pytest.raises(ValueError) as refused:
            flow.deny(session, stores, request, actor="officer:kim", reason=reason)
        assert str(refused.value) == "a denial needs a reason"
        assert request.status == "awaiting_review"


def test_an_officers_retry_resets_the_failed_task_to_a_fresh_start(
        stores: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """broken fails for good; the retry makes its task new again (no attempts, reclaims,
    records, result or error) and records how many tasks it retried."""
    stores.clock = MovableClock(START)
    with stores.transaction() as session:
        request = flow.submit(session, stores, "access", {"email": [ALICE]})
        flow.mark_verified(session, stores, request, actor="test", method="test")
        request_id = request.id
    with InProcessExecutor(stores, 1, poll_seconds=0.02) as executor:
        assert executor.wait_until_idle(30)
    with stores.transaction() as session:
        broken = session.scalars(select(Task).where(Task.request_id == request_id,
                                                    Task.connector == "broken")).one()
        assert (broken.status, broken.attempts) == ("failed", 1)
        broken.reclaims, broken.record_count = 2, 7
        broken.lease_owner, broken.lease_expires_at = "w:gone", START
    stores.clock.advance(hours=1)  # type: ignore[attr-defined]
    with stores.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None and request.status == "partially_failed"
        assert flow.retry(session, stores, request, actor="officer:kim") == 1
    with stores.transaction() as session:
        broken = session.scalars(select(Task).where(Task.request_id == request_id,
                                                    Task.connector == "broken")).one()
        assert (broken.status, broken.attempts, broken.reclaims, broken.record_count,
                broken.result, broken.retrying_since, broken.lease_owner,
                broken.lease_expires_at, broken.last_error, broken.finished_at) == \
            ("pending", 0, 0, 0, None, None, None, None, None, None)
        assert broken.not_before == START + timedelta(hours=1)
    [event] = [e for e in events(stores, "request.processing") if e.actor == "officer:kim"]
    assert json.loads(event.details) == {"from": "partially_failed", "retried_tasks": 1}


def test_an_approval_starts_the_work_as_the_system(stores: Runtime) -> None:
    request_id = awaiting_review(stores, ALICE)
    with stores.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        flow.approve(session, stores, request, actor="officer:kim")
    assert [e.actor for e in events(stores, "request.approved")] == ["officer:kim"]
    assert [e.actor for e in events(stores, "request.processing")] == ["system"]


def test_the_preview_widens_the_subject_past_stores_without_kinds_or_that_fail(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Discoverers in name order: one takes no kind the subject has yet, one fails, then
    crm finds a customer id and the phone; the phone store's records show, within the
    identifier cap."""
    for name in ("a-ids", "b-failing", "crm", "phones"):
        scripts[name] = Script()
    scripts["crm"].links[ALICE] = {"phone": {"+447700900001"}, "customer_id": {"c-1"}}
    scripts["phones"].seed("+447700900001", 2, "calls")
    monkeypatch.setitem(TYPES, "failing-discovery", FailingDiscovery)
    connectors = {
        "a-ids": {"type": "discovering", "script": "a-ids", "kinds": ["customer_id"]},
        "b-failing": {"type": "failing-discovery", "script": "b-failing"},
        "crm": {"type": "discovering", "script": "crm"},
        "phones": {"type": "scripted", "script": "phones", "kinds": ["phone"]},
    }
    for cap, identifiers in ((3, 3), (2, 2)):
        rt: Runtime = make_app(connectors, DISCOVERY_MAX_IDENTIFIERS=cap).extensions["dsar"]
        request_id = awaiting_review(rt, ALICE)
        with rt.transaction() as session:
            request = session.get(Request, request_id)
            assert request is not None
            previews = {p["connector"]: p for p in preview_erasure(session, rt, request,
                                                                  actor="officer:kim")}
        if cap == 3:
            assert previews["phones"]["summary"] == {"delete": 2, "mask": 0, "keep": 0}
        else:  # the customer id (its kind sorts first) fills the cap: no phone
            assert previews["phones"] == {"connector": "phones",
                                          "note": "no identifiers of the kinds it accepts"}
        [event] = [e for e in events(rt, "erasure.previewed") if e.request_id == request_id]
        assert json.loads(event.details)["identifiers"] == identifiers


def test_a_submission_is_stamped_by_the_runtimes_clock_and_keeps_what_the_requester_wrote(
        rt: Runtime) -> None:
    """Received when submitted (the instant its due date counts from), not when the row is
    written; a name alone, or a message alone, is kept (encrypted); ``request.received`` is
    the requester's unless told otherwise, with the kind, the identifiers' digests and the
    due date."""
    clock = rt.clock = MovableClock(START)
    with rt.transaction() as session:
        named = flow.submit(session, rt, "access", {"email": [ALICE]}, name="Zoë")
        wrote = flow.submit(session, rt, "erasure", {"email": [BOB]}, message="hello")
        silent = flow.submit(session, rt, "access", {"email": [BOB]})
        clock.advance(seconds=1)
        session.flush()
        assert (named.received_at, named.due_at) == (START, due_date(START))
        assert [None if r.details_ct is None else
                json.loads(rt.crypto.decrypt_text(r.details_ct, "request:details"))
                for r in (named, wrote, silent)] == [
            {"name": "Zoë", "message": None}, {"name": None, "message": "hello"}, None]
        named_id, due_at = named.id, named.due_at
    [event] = [e for e in events(rt, "request.received") if e.request_id == named_id]
    assert event.actor == "requester"
    assert json.loads(event.details) == {
        "kind": "access", "due_at": due_at.isoformat(),
        "identifiers": [f"email:{rt.crypto.identifier_digest('email', ALICE)}"]}


def test_what_the_workflow_refuses_says_what_is_wrong(rt: Runtime) -> None:
    """An unknown kind or no identifier (callers validate first: these are a script's
    errors), an unknown id, and an approval the preview's failures stop (the CLI prints it)."""
    with rt.transaction() as session:
        with pytest.raises(flow.UnknownRequest) as unknown:
            flow.get(session, "f" * 32)
        assert unknown.value.args == ("f" * 32,)
        with pytest.raises(ValueError, match="^unknown request kind 'deletion'$"):
            flow.submit(session, rt, "deletion", {"email": [ALICE]})
        with pytest.raises(ValueError, match="^a request needs at least one identifier$"):
            flow.submit(session, rt, "access", {"email": [" "]})
        session.rollback()
    assert str(flow.PreviewFailed(["archive", "broken"])) == (
        "the erasure preview failed for archive, broken: approving anyway needs a reason")


def test_once_the_requester_proved_it_the_system_moves_the_request_on(stores: Runtime) -> None:
    """An erasure under review waits for an officer, an access request starts: both moves
    are the system's, not the requester's."""
    with stores.transaction() as session:
        erasing = flow.submit(session, stores, "erasure", {"email": [ALICE]})
        access = flow.submit(session, stores, "access", {"email": [BOB]})
        for request in (erasing, access):
            flow.mark_verified(session, stores, request, actor="requester", method="email-code")
        erasing_id, access_id = erasing.id, access.id
    assert [(e.request_id, e.actor) for e in events(stores, "request.verified")] == \
        [(erasing_id, "requester"), (access_id, "requester")]
    assert [(e.request_id, e.actor) for e in events(stores, "request.awaiting_review")] == \
        [(erasing_id, "system")]
    assert [(e.request_id, e.actor) for e in events(stores, "request.processing")] == \
        [(access_id, "system")]


def test_a_request_unverified_for_longer_than_the_expiry_days_expires_by_the_system(
        rt: Runtime) -> None:
    """Exactly UNVERIFIED_EXPIRY_DAYS after its receipt it still waits; a moment later it
    expires, the event saying after how many days."""
    days = int(rt.settings["UNVERIFIED_EXPIRY_DAYS"])
    clock = rt.clock = MovableClock(START)
    with rt.transaction() as session:
        request_id = flow.submit(session, rt, "access", {"email": [ALICE]}).id
    clock.advance(days=days)
    with rt.transaction() as session:
        assert flow.expire_unverified(session, rt) == 0
    clock.advance(microseconds=1)
    with rt.transaction() as session:
        assert flow.expire_unverified(session, rt) == 1
        assert flow.get(session, request_id).status == "expired"
    [event] = events(rt, "request.expired")
    assert (event.actor, json.loads(event.details)) == \
        ("system", {"from": "received", "after_days": days})
