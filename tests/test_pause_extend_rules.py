"""Moving the due date, rule by rule: the one Art. 12(3) extension (by one or two
further months, counted from the end of the first month, asked within it) and the
paused clock (UK GDPR Art. 12A: the due date moves by the time paused). Each row is a
case a lawyer could read: when the request came in, when the officer acted, what
follows. Then the same rules through the workflow, on a moved clock, with their
audit events; and the erasure approved while its preview failed for a store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import AuditEvent, ErasurePreview, Request
from dsar.runtime import Runtime
from dsar.workflow import extensions as rules
from dsar.workflow import requests as flow
from dsar.workflow import verification
from dsar.workflow.extensions import Refused
from dsar.workflow.requests import PreviewFailed
from dsar.workflow.states import IllegalTransition, Status

#: the workflow's tests: on SQLite (the rules are the same on PostgreSQL)
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- when an extension may be decided ----------------------------------------------------

#: received, due date as it stands, asked at, allowed?, why
WINDOW = [
    (at(2026, 4, 1, 9), at(2026, 5, 1, 9), at(2026, 4, 29, 9), True,
     "day 29 of a 30-day first month"),
    (at(2026, 4, 1, 9), at(2026, 5, 1, 9), at(2026, 4, 30, 23, 59), True,
     "day 30 of a 30-day first month, late in the evening"),
    (at(2026, 4, 1, 9), at(2026, 5, 1, 9), at(2026, 5, 1, 9), True,
     "at the very moment the first month ends"),
    (at(2026, 4, 1, 9), at(2026, 5, 1, 9), at(2026, 5, 1, 9, 0, 0, 1), False,
     "a microsecond after the first month ends"),
    (at(2026, 3, 1, 9), at(2026, 4, 1, 9), at(2026, 3, 31, 9), True,
     "day 31 of a 31-day first month"),
    (at(2026, 3, 1, 9), at(2026, 4, 1, 9), at(2026, 4, 2, 9), False,
     "the day after the first month ended"),
    (at(2026, 1, 31, 10), at(2026, 2, 28, 10), at(2026, 2, 28, 10), True,
     "received 31 January: the first month ends on 28 February"),
    (at(2026, 1, 31, 10), at(2026, 2, 28, 10), at(2026, 2, 28, 10, 1), False,
     "received 31 January: 28 February after the hour of receipt is too late"),
    (at(2028, 1, 31, 10), at(2028, 2, 29, 10), at(2028, 2, 29, 9), True,
     "a leap year: 29 February is still in the first month"),
    (at(2028, 1, 31, 10), at(2028, 3, 1, 10), at(2028, 3, 1, 9), True,
     "paused one day before: the first month ends a day later"),
    (at(2026, 4, 1, 9), at(2026, 5, 1, 9), at(2026, 3, 31, 9), True,
     "a clock behind the receipt: still within the first month"),
]


@pytest.mark.parametrize(("received", "due", "asked", "allowed"),
                         [row[:4] for row in WINDOW], ids=[row[4] for row in WINDOW])
def test_an_extension_is_decided_within_the_first_month(received: datetime, due: datetime,
                                                        asked: datetime,
                                                        allowed: bool) -> None:
    refusal = rules.extension_refusal("awaiting_review", None, due, asked)
    if allowed:
        assert refusal is None
    else:
        assert refusal == "the first month has ended: an extension must be decided within it"


def test_an_extension_is_decided_once() -> None:
    refusal = rules.extension_refusal("processing", at(2026, 4, 2), at(2026, 7, 1),
                                      at(2026, 4, 3))
    assert refusal == "the deadline was extended already: Art. 12(3) allows it once"


@pytest.mark.parametrize("status", [s.value for s in Status])
def test_the_states_in_which_the_deadline_may_be_extended(status: str) -> None:
    refusal = rules.extension_refusal(status, None, at(2026, 5, 1), at(2026, 4, 2))
    open_states = {"received", "verifying", "verified", "awaiting_review", "approved",
                   "processing", "partially_failed"}
    if status in open_states:
        assert refusal is None
    else:  # ended, or paused: its clock stands still, resume it first
        assert refusal == f"a request that is {status} cannot have its deadline extended"


# --- the extended due date ----------------------------------------------------------------

#: received, due date as it stands, months, extended due date, why
EXTENDED = [
    (at(2026, 3, 15, 9, 30), at(2026, 4, 15, 9, 30), 1, at(2026, 5, 15, 9, 30),
     "one further month: the same date a month after the first month ends"),
    (at(2026, 3, 15, 9, 30), at(2026, 4, 15, 9, 30), 2, at(2026, 6, 15, 9, 30),
     "two further months"),
    (at(2026, 1, 31, 10), at(2026, 2, 28, 10), 2, at(2026, 4, 28, 10),
     "received 31 January: counted from 28 February, so 28 April, not 30 April"),
    (at(2026, 1, 31, 10), at(2026, 2, 28, 10), 1, at(2026, 3, 28, 10),
     "received 31 January, one month: 28 March"),
    (at(2028, 1, 31, 10), at(2028, 2, 29, 10), 2, at(2028, 4, 29, 10),
     "a leap year: from 29 February, 29 April"),
    (at(2026, 12, 30, 8), at(2027, 1, 30, 8), 1, at(2027, 2, 28, 8),
     "from 30 January: February has no 30th"),
    (at(2026, 12, 30, 8), at(2027, 1, 30, 8), 2, at(2027, 3, 30, 8),
     "from 30 January, two months: 30 March"),
    (at(2026, 10, 31, 8), at(2026, 11, 30, 8), 2, at(2027, 1, 30, 8),
     "into the next year"),
    (at(2026, 3, 15, 9, 30), at(2026, 4, 18, 9, 30), 2, at(2026, 6, 18, 9, 30),
     "paused 3 days before: the 3 days are kept"),
    (at(2026, 3, 15, 9, 30), at(2026, 4, 15, 9, 30, 0, 7), 1, at(2026, 5, 15, 9, 30, 0, 7),
     "paused 7 microseconds: kept to the microsecond"),
    (at(2026, 1, 31, 10), at(2026, 3, 3, 10), 1, at(2026, 3, 31, 10),
     "received 31 January, paused 3 days: 28 March and the 3 days, not a month after 3 March"),
]


@pytest.mark.parametrize(("received", "due", "months", "extended"),
                         [row[:4] for row in EXTENDED], ids=[row[4] for row in EXTENDED])
def test_the_extended_due_date(received: datetime, due: datetime, months: int,
                               extended: datetime) -> None:
    assert rules.extended_due(received, due, months) == extended


@pytest.mark.parametrize("months", [-1, 0, 3, 12])
def test_an_extension_is_of_one_or_two_months(months: int) -> None:
    message = f"an extension is of 1 to 2 further months, not {months}"
    with pytest.raises(ValueError, match=f"^{message}$"):
        rules.check_months(months)
    with pytest.raises(ValueError, match=f"^{message}$"):
        rules.extended_due(at(2026, 3, 1), at(2026, 4, 1), months)


@pytest.mark.parametrize("months", [1, 2])
def test_one_and_two_months_are_extensions(months: int) -> None:
    rules.check_months(months)  # no error


# --- the paused clock -------------------------------------------------------------------

#: due date, paused at, resumed at, due date after, why
PAUSES = [
    (at(2026, 4, 15, 9), at(2026, 3, 20, 12), at(2026, 3, 23, 12), at(2026, 4, 18, 9),
     "a pause of 3 days moves the due date 3 days"),
    (at(2026, 4, 15, 9), at(2026, 3, 20, 12), at(2026, 3, 20, 12), at(2026, 4, 15, 9),
     "resumed at once: the due date stays"),
    (at(2026, 4, 15, 9), at(2026, 3, 20, 12), at(2026, 3, 20, 12, 0, 0, 1),
     at(2026, 4, 15, 9, 0, 0, 1), "a microsecond paused, a microsecond later"),
    (at(2026, 4, 15, 9), at(2026, 3, 20, 12), at(2026, 3, 20, 17, 30), at(2026, 4, 15, 14, 30),
     "five and a half hours: hours count, not only days"),
    (at(2026, 4, 15, 9), at(2026, 2, 20, 9), at(2026, 3, 2, 9), at(2026, 4, 25, 9),
     "20 February to 2 March: 10 days"),
    (at(2028, 4, 15, 9), at(2028, 2, 20, 9), at(2028, 3, 2, 9), at(2028, 4, 26, 9),
     "20 February to 2 March of a leap year: 11 days"),
    (at(2026, 2, 27, 9), at(2026, 2, 20, 9), at(2026, 3, 2, 9), at(2026, 3, 9, 9),
     "a due date across the end of February: days, not months, are added"),
    (at(2026, 4, 15, 9), at(2026, 4, 10, 9), at(2026, 5, 10, 9), at(2026, 5, 15, 9),
     "resumed after the old due date: moved by the whole pause"),
    (at(2026, 4, 15, 9), at(2026, 3, 20, 12), at(2026, 3, 20, 11), at(2026, 4, 15, 9),
     "a clock that went back: never earlier"),
]


@pytest.mark.parametrize(("due", "paused", "resumed", "after"),
                         [row[:4] for row in PAUSES], ids=[row[4] for row in PAUSES])
def test_a_pause_moves_the_due_date_by_the_time_paused(due: datetime, paused: datetime,
                                                       resumed: datetime,
                                                       after: datetime) -> None:
    assert rules.resumed_due(due, paused, resumed) == after
    assert rules.paused_for(paused, resumed) == max(after - due, timedelta(0))


# --- through the workflow, on a moved clock -----------------------------------------------

RECEIVED = at(2026, 3, 2, 9)


@pytest.fixture
def clock(rt: Runtime) -> MovableClock:
    rt.clock = MovableClock(RECEIVED)
    return rt.clock


def new_request(rt: Runtime, kind: str = "erasure", status: str = "awaiting_review") -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": ["a@example.org"]})
        request.status = status
        return request.id


def events(rt: Runtime, request_id: str, *actions: str) -> list[tuple[str, str, dict[str, object]]]:
    with rt.transaction() as session:
        rows = session.execute(select(AuditEvent.action, AuditEvent.actor, AuditEvent.details)
                               .where(AuditEvent.request_id == request_id,
                                      AuditEvent.action.in_(actions))
                               .order_by(AuditEvent.seq)).all()
    return [(action, actor, json.loads(details)) for action, actor, details in rows]


def state(rt: Runtime, request_id: str) -> Request:
    with rt.transaction() as session:
        request = flow.get(session, request_id)
        session.expunge(request)
        return request


def act(rt: Runtime, request_id: str, action: str, **kwargs: object) -> None:
    with rt.transaction() as session:
        getattr(flow, action)(session, rt, flow.get(session, request_id, lock=True),
                              actor="officer:o1", **kwargs)


@SQLITE
@pytest.mark.parametrize("status", ["received", "verifying", "awaiting_review"])
def test_pause_then_resume_twice(rt: Runtime, clock: MovableClock, status: str) -> None:
    request_id = new_request(rt, status=status)
    due = at(2026, 4, 2, 9)
    assert state(rt, request_id).due_at == due
    clock.advance(days=1)
    act(rt, request_id, "pause", waiting_for="identity", note=" asked for a passport copy\n")
    paused = state(rt, request_id)
    assert (paused.status, paused.paused_from, paused.paused_for) == ("paused", status,
                                                                      "identity")
    assert paused.paused_at == at(2026, 3, 3, 9) and paused.due_at == due
    assert paused.status_reason == "asked for a passport copy"
    clock.advance(days=3)
    act(rt, request_id, "resume")
    resumed = state(rt, request_id)
    assert (resumed.status, resumed.due_at) == (status, at(2026, 4, 5, 9))
    assert (resumed.paused_at, resumed.paused_from, resumed.paused_for) == (None, None, None)
    assert resumed.status_reason is None and resumed.closed_at is None
    clock.advance(days=1)
    act(rt, request_id, "pause", waiting_for="clarification")
    clock.advance(hours=12)
    act(rt, request_id, "resume")
    assert state(rt, request_id).due_at == at(2026, 4, 5, 21)
    assert events(rt, request_id, "request.paused", "request.resumed") == [
        ("request.paused", "officer:o1", {"from": status, "waiting_for": "identity",
                                          "due_at": "2026-04-02T09:00:00+00:00",
                                          "reason": "asked for a passport copy"}),
        ("request.resumed", "officer:o1", {"from": "paused", "to": status,
                                           "waited_for": "identity",
                                           "paused_seconds": 259200.0,
                                           "due_at": "2026-04-05T09:00:00+00:00"}),
        ("request.paused", "officer:o1", {"from": status, "waiting_for": "clarification",
                                          "due_at": "2026-04-05T09:00:00+00:00"}),
        ("request.resumed", "officer:o1", {"from": "paused", "to": status,
                                           "waited_for": "clarification",
                                           "paused_seconds": 43200.0,
                                           "due_at": "2026-04-05T21:00:00+00:00"}),
    ]


@SQLITE
@pytest.mark.parametrize("status", ["verified", "approved", "processing", "partially_failed",
                                    "completed", "denied", "cancelled", "expired", "paused"])
def test_a_request_past_waiting_for_the_requester_cannot_be_paused(
        rt: Runtime, clock: MovableClock, status: str) -> None:
    request_id = new_request(rt, status=status)
    with pytest.raises(IllegalTransition, match=f"^a request that is {status} cannot "
                                                "become paused$"):
        act(rt, request_id, "pause", waiting_for="identity")
    assert state(rt, request_id).status == status and state(rt, request_id).paused_at is None


@SQLITE
def test_a_pause_waits_for_identity_or_clarification(rt: Runtime, clock: MovableClock) -> None:
    request_id = new_request(rt)
    with pytest.raises(ValueError, match="^a pause waits for identity or clarification, "
                                         "not 'payment'$"):
        act(rt, request_id, "pause", waiting_for="payment")
    assert state(rt, request_id).status == "awaiting_review"
    assert events(rt, request_id, "request.paused") == []


@SQLITE
@pytest.mark.parametrize("status", ["received", "awaiting_review", "processing", "cancelled"])
def test_only_a_paused_request_resumes(rt: Runtime, clock: MovableClock, status: str) -> None:
    request_id = new_request(rt, status=status)
    with pytest.raises(IllegalTransition, match=f"^a request that is {status} cannot "
                                                "become resumed$"):
        act(rt, request_id, "resume")


@SQLITE
@pytest.mark.parametrize(("status", "paused_at", "paused_from"), [
    ("received", RECEIVED, "received"),  # a pause's leftovers do not make it paused
    ("paused", None, "received"),
    ("paused", RECEIVED, None),
])
def test_resume_needs_a_pause_with_its_start_and_its_state(
        rt: Runtime, clock: MovableClock, status: str, paused_at: datetime | None,
        paused_from: str | None) -> None:
    request_id = new_request(rt, status=status)
    with rt.transaction() as session:
        request = flow.get(session, request_id)
        request.paused_at, request.paused_from = paused_at, paused_from
    with pytest.raises(IllegalTransition, match=f"^a request that is {status} cannot "
                                                "become resumed$"):
        act(rt, request_id, "resume")
    assert state(rt, request_id).due_at == at(2026, 4, 2, 9)


@SQLITE
def test_a_paused_request_may_be_cancelled_and_then_not_resumed(rt: Runtime,
                                                                clock: MovableClock) -> None:
    request_id = new_request(rt)
    act(rt, request_id, "pause", waiting_for="clarification")
    act(rt, request_id, "cancel", reason="no answer from the requester")
    assert state(rt, request_id).status == "cancelled"
    with pytest.raises(IllegalTransition):
        act(rt, request_id, "resume")


@SQLITE
def test_a_pause_is_not_an_unverified_request_to_expire(rt: Runtime,
                                                        clock: MovableClock) -> None:
    request_id = new_request(rt, status="verifying")
    act(rt, request_id, "pause", waiting_for="identity")
    clock.advance(days=60)
    with rt.transaction() as session:
        assert flow.expire_unverified(session, rt) == 0
    assert state(rt, request_id).status == "paused"


@SQLITE
def test_extend_once_within_the_first_month(rt: Runtime, clock: MovableClock) -> None:
    request_id = new_request(rt)
    clock.advance(days=29)
    act(rt, request_id, "extend", months=2, reason="  forty stores to search  ")
    extended = state(rt, request_id)
    assert extended.due_at == at(2026, 6, 2, 9) and extended.status == "awaiting_review"
    assert extended.extended_at == at(2026, 3, 31, 9)
    assert extended.extension_reason == "forty stores to search"
    assert events(rt, request_id, "request.extended") == [
        ("request.extended", "officer:o1", {"months": 2, "reason": "forty stores to search",
                                            "due_at_before": "2026-04-02T09:00:00+00:00",
                                            "due_at": "2026-06-02T09:00:00+00:00"})]
    with pytest.raises(Refused, match="allows it once"):
        act(rt, request_id, "extend", months=1, reason="again")
    assert state(rt, request_id).due_at == at(2026, 6, 2, 9)


@SQLITE
def test_no_extension_after_the_first_month(rt: Runtime, clock: MovableClock) -> None:
    request_id = new_request(rt)
    clock.advance(days=31, microseconds=1)
    with pytest.raises(Refused, match="the first month has ended"):
        act(rt, request_id, "extend", months=1, reason="late")
    assert state(rt, request_id).extended_at is None
    assert events(rt, request_id, "request.extended") == []


@SQLITE
def test_a_pause_moves_the_first_month_and_is_kept_by_the_extension(
        rt: Runtime, clock: MovableClock) -> None:
    request_id = new_request(rt)
    clock.advance(days=10)
    act(rt, request_id, "pause", waiting_for="clarification")
    with pytest.raises(Refused, match="^a request that is paused cannot have its deadline "
                                      "extended$"):
        act(rt, request_id, "extend", months=1, reason="while paused")
    clock.advance(days=5)
    act(rt, request_id, "resume")
    clock.advance(days=18)  # 33 days after receipt: within the first month moved by 5
    act(rt, request_id, "extend", months=1, reason="many stores")
    assert state(rt, request_id).due_at == at(2026, 5, 7, 9)


@SQLITE
@pytest.mark.parametrize("reason", ["", "   "])
def test_an_extension_needs_a_reason(rt: Runtime, clock: MovableClock, reason: str) -> None:
    request_id = new_request(rt)
    with pytest.raises(ValueError, match="^an extension needs a reason$"):
        act(rt, request_id, "extend", months=1, reason=reason)
    with pytest.raises(ValueError, match="^an extension is of 1 to 2 further months, not 3$"):
        act(rt, request_id, "extend", months=3, reason="too long")
    assert state(rt, request_id).extended_at is None
    assert state(rt, request_id).due_at == at(2026, 4, 2, 9)


# --- approving an erasure whose preview failed for a store --------------------------------

def preview(rt: Runtime, request_id: str, stores: dict[str, dict[str, object]]) -> None:
    """The request's stored preview: one entry per store, as preview_erasure makes them."""
    with rt.transaction() as session:
        row = session.get(ErasurePreview, request_id) or ErasurePreview(
            request_id=request_id, requested_at=rt.now(), requested_by="system")
        row.computed_at, row.identifiers = rt.now(), 1
        row.stores = json.dumps([{"connector": name, **entry} for name, entry in stores.items()])
        session.add(row)


def failed(rt: Runtime, request_id: str) -> list[str]:
    with rt.transaction() as session:
        return flow.failed_preview_stores(session, flow.get(session, request_id))


@SQLITE
def test_the_stores_whose_preview_failed(rt: Runtime, clock: MovableClock) -> None:
    request_id, other = new_request(rt), new_request(rt)
    assert failed(rt, request_id) == []
    with rt.transaction() as session:  # asked for, not computed yet
        session.add(ErasurePreview(request_id=request_id, requested_at=rt.now(),
                                   requested_by="system"))
    assert failed(rt, request_id) == []
    preview(rt, request_id, {"crm": {"summary": {"delete": 3}}, "zeta": {"error": "timed out"},
                             "phones": {"note": "takes no email"},
                             "broken": {"error": "connection refused"}})
    preview(rt, other, {"crm": {"error": "down"}})
    assert failed(rt, request_id) == ["broken", "zeta"]
    assert failed(rt, other) == ["crm"]  # each request its own preview
    assert failed(rt, new_request(rt)) == []
    preview(rt, request_id, {"crm": {"summary": {"delete": 3}},
                             "broken": {"summary": {"delete": 0}}})
    assert failed(rt, request_id) == []  # computed again: it worked


@SQLITE
def test_an_erasure_whose_preview_failed_is_approved_only_with_a_reason(
        rt: Runtime, clock: MovableClock) -> None:
    request_id = new_request(rt)
    preview(rt, request_id, {"crm": {"summary": {"delete": 1}},
                             "broken": {"error": "connection refused"}})
    for reason in (None, "  "):
        with pytest.raises(PreviewFailed, match="^the erasure preview failed for broken: "
                                                "approving anyway needs a reason$"):
            act(rt, request_id, "approve", reason=reason)
    assert state(rt, request_id).status == "awaiting_review"
    act(rt, request_id, "approve", reason=" the store holds no customer data ")
    approved = state(rt, request_id)
    assert approved.status_reason == "the store holds no customer data"
    assert events(rt, request_id, "request.approved") == [
        ("request.approved", "officer:o1", {"from": "awaiting_review",
                                            "preview_failed": ["broken"],
                                            "reason": "the store holds no customer data"})]


@SQLITE
def test_an_erasure_previewed_well_is_approved_without_a_reason(
        rt: Runtime, clock: MovableClock) -> None:
    request_id = new_request(rt)
    preview(rt, request_id, {"crm": {"summary": {"delete": 1}},
                             "phones": {"note": "takes no email"}})
    act(rt, request_id, "approve")
    assert state(rt, request_id).status_reason is None
    assert events(rt, request_id, "request.approved") == [
        ("request.approved", "officer:o1", {"from": "awaiting_review"})]


# --- what the requester sees --------------------------------------------------------------

@SQLITE
@pytest.mark.parametrize(("waiting_for", "said"), [
    ("identity", "We need to confirm who you are before we can go on"),
    ("clarification", "We need you to tell us more about what you are asking for"),
])
def test_the_requester_sees_the_pause_and_the_extension(
        app: Flask, rt: Runtime, clock: MovableClock, waiting_for: str, said: str) -> None:
    with rt.transaction() as session:
        started = verification.receive(session, rt, "erasure", "ann@example.org")
        request_id, token = started.request.id, started.status_token
    act(rt, request_id, "pause", waiting_for=waiting_for, note="officers only")
    client = app.test_client()
    document = client.get(f"/api/v1/requests/{request_id}",
                          headers={"Authorization": f"Bearer {token}"}).get_json()
    assert (document["status"], document["reason"]) == ("paused", None)
    assert document["due_at"] == "2026-04-02T09:00:00+00:00"
    page = client.get(f"/requests/{request_id}?token={token}", follow_redirects=True)
    assert page.status_code == 200
    assert said in page.text and "the date we answer by moves by it" in page.text
    assert "officers only" not in page.text
    clock.advance(days=2)
    act(rt, request_id, "resume")
    act(rt, request_id, "extend", months=1, reason="Your data is in forty systems.")
    document = client.get(f"/api/v1/requests/{request_id}",
                          headers={"Authorization": f"Bearer {token}"}).get_json()
    assert document["status"] == "verifying"
    assert document["due_at"] == "2026-05-04T09:00:00+00:00"
    assert document["reason"] == "Your data is in forty systems."
    page = client.get(f"/requests/{request_id}")
    assert "Why we need more time" in page.text
    assert "Your data is in forty systems." in page.text
