"""An officer's actions on a request in the console: each one's form, its errors (400
with the summary), the confirmation page restating what will happen, the change and
its audit event naming the officer by id, 409 once the state forbids it (at any of
the three steps), 403 for an auditor, and CSRF."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import AuditEvent, ErasurePreview, Request, Task
from dsar.workflow import requests as flow
from dsar.workflow import verification
from dsar.workflow.deadlines import add_months
from tests.console.client import Console, Officer
from tests.console.conftest import START

#: most tests on SQLite only; the two that walk a whole action also on PostgreSQL
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def reviewer(console: Console) -> Officer:
    return console.officer("rita@example.org", "reviewer")


def new_request(console: Console, kind: str = "erasure") -> str:
    """An erasure awaiting review (an access request: processing, with no store),
    received on 2 March 2026 a little after 09:00 (signing in moves the clock)."""
    rt = console.rt
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": ["ann@example.org"]})
        flow.mark_verified(session, rt, request, actor="operator:test", method="out-of-band")
        return request.id


def row(console: Console, request_id: str) -> Request:
    with console.rt.transaction() as session:
        found = flow.get(session, request_id)
        session.expunge(found)
        return found


def last_event(console: Console, request_id: str) -> tuple[str, str, dict[str, object]]:
    with console.rt.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)
                                .order_by(AuditEvent.seq.desc())).first()
        assert event is not None
        return event.action, event.actor, json.loads(event.details)


def events_of(console: Console, request_id: str) -> list[str]:
    with console.rt.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.request_id == request_id).order_by(AuditEvent.seq)))


def text(page_html: str) -> str:
    """The page's words, tags dropped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", page_html).replace("&#34;", '"')
                    .replace("&#39;", "'").replace("&amp;", "&").split())


def base(request_id: str, action: str) -> str:
    return f"/console/requests/{request_id}/{action}"


# --- approve ----------------------------------------------------------------------------

@SQLITE
def test_approve_form_confirmation_and_the_event(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    form = console.get(base(request_id, "approve"))
    assert form.status_code == 200
    assert "The erasure starts in every store as soon as you confirm." in text(form.text)
    check = console.post(base(request_id, "approve"))
    assert check.status_code == 200
    words = text(check.text)
    assert "Check before you confirm: approve the erasure" in words
    assert "The erasure starts at once in every store: no store (none is configured)." in words
    assert "What the stores delete cannot be brought back." in words
    assert row(console, request_id).status == "awaiting_review"  # nothing done yet
    done = console.post(base(request_id, "approve") + "/confirm")
    assert done.status_code == 303
    assert done.headers["Location"] == f"/console/requests/{request_id}"
    assert row(console, request_id).status != "awaiting_review"
    assert "request.approved" in events_of(console, request_id)
    with console.rt.transaction() as session:
        approved = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == request_id, AuditEvent.action == "request.approved")).one()
        assert approved.actor == f"officer:{reviewer.id}"
        assert "rita" not in approved.actor
    page = console.get(f"/console/requests/{request_id}")
    assert "Approved: the erasure has started." in text(page.text)


def store_preview(console: Console, request_id: str, stores: list[dict[str, object]]) -> None:
    with console.rt.transaction() as session:
        session.add(ErasurePreview(request_id=request_id, requested_at=START,
                                   requested_by="system", computed_at=START, identifiers=1,
                                   stores=json.dumps(stores)))


def test_an_erasure_whose_preview_failed_needs_a_reason(console: Console,
                                                         reviewer: Officer) -> None:
    request_id = new_request(console)
    store_preview(console, request_id, [{"connector": "crm", "summary": {"delete": 2}},
                                        {"connector": "billing", "error": "timed out"}])
    form = console.get(base(request_id, "approve"))
    assert "The erasure preview failed for billing." in text(form.text)
    refused = console.post(base(request_id, "approve"), reason="  ")
    assert refused.status_code == 400
    assert "There is a problem" in refused.text
    assert ('href="#reason">The preview failed for billing: say why you approve the erasure '
            'anyway</a>') in refused.text
    too_long = console.post(base(request_id, "approve"), reason="x" * 2001)
    assert too_long.status_code == 400
    assert "The reason must be 2,000 characters or fewer" in too_long.text
    check = console.post(base(request_id, "approve"), reason="billing holds no customers")
    assert check.status_code == 200
    words = text(check.text)
    assert "Preview failed for billing" in words
    assert "Why you approve anyway billing holds no customers" in words
    assert "Your reason is kept on the request and in the audit trail." in words
    assert 'type="hidden" name="reason" value="billing holds no customers"' in check.text
    tampered = console.post(base(request_id, "approve") + "/confirm", reason="")
    assert tampered.status_code == 400 and row(console, request_id).status == "awaiting_review"
    done = console.post(base(request_id, "approve") + "/confirm",
                        reason="billing holds no customers")
    assert done.status_code == 303
    with console.rt.transaction() as session:
        approved = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == request_id, AuditEvent.action == "request.approved")).one()
        assert approved.actor == f"officer:{reviewer.id}"
        assert json.loads(approved.details) == {
            "from": "awaiting_review", "preview_failed": ["billing"],
            "reason": "billing holds no customers"}


# --- deny -------------------------------------------------------------------------------

@SQLITE
def test_deny_with_a_template_and_free_text(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    form = console.get(base(request_id, "deny"))
    words = text(form.text)
    assert "We must keep this data to meet a legal obligation (GDPR Art. 17(3)(b))." in words
    assert "Another reason: write it below" in words
    none = console.post(base(request_id, "deny"))
    assert none.status_code == 400
    assert 'href="#template">Choose the reason for the denial</a>' in none.text
    other = console.post(base(request_id, "deny"), template="other")
    assert other.status_code == 400
    assert 'href="#details">Write the reason the requester will read</a>' in other.text
    assert 'id="template-other" name="template" type="radio" value="other" checked' in other.text
    check = console.post(base(request_id, "deny"), template="legal_claims",
                         details="A claim is open with you.")
    assert check.status_code == 200
    assert ("Reason the requester reads We need this data to establish, exercise or defend "
            "legal claims (GDPR Art. 17(3)(e)). A claim is open with you.") in text(check.text)
    assert "button--warning" in check.text
    edit = console.post(base(request_id, "deny"), edit="1", template="legal_claims",
                         details="A claim is open with you.")
    assert edit.status_code == 200 and "<h1>Deny the erasure</h1>" in edit.text
    assert 'value="legal_claims" checked' in edit.text
    done = console.post(base(request_id, "deny") + "/confirm", template="legal_claims",
                        details="A claim is open with you.")
    assert done.status_code == 303
    denied = row(console, request_id)
    assert denied.status == "denied"
    assert denied.status_reason == ("We need this data to establish, exercise or defend legal "
                                    "claims (GDPR Art. 17(3)(e)). A claim is open with you.")
    assert last_event(console, request_id)[:2] == ("request.denied", f"officer:{reviewer.id}")


@SQLITE
def test_the_denial_reasons_are_the_company_texts(make_app: Callable[..., Flask],
                                                 tmp_path: Path) -> None:
    texts = tmp_path / "texts.toml"
    texts.write_text('[texts]\n"deny.reason.legal_claims" = "Wir brauchen die Daten."\n'
                     '"deny.reason.unfounded" = ""\n', encoding="utf-8")
    app = make_app(TESTING=True, TEXTS=str(texts))
    app.extensions["dsar"].clock = MovableClock(START)
    console = Console(app)
    console.officer("rita@example.org", "reviewer")
    request_id = new_request(console)
    words = text(console.get(base(request_id, "deny")).text)
    assert "Wir brauchen die Daten." in words
    assert "manifestly unfounded" not in words  # emptied: not offered
    refused = console.post(base(request_id, "deny"), template="unfounded")
    assert refused.status_code == 400


# --- extend -----------------------------------------------------------------------------

@SQLITE
def test_extend_once_with_the_new_date_restated(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)  # received 2 March 09:00, due 2 April 09:00
    form = console.get(base(request_id, "extend"))
    words = text(form.text)
    assert "One further month: due 2026-05-02 09:00 UTC" in words
    assert "Two further months: due 2026-06-02 09:00 UTC" in words
    wrong = console.post(base(request_id, "extend"), months="3")
    assert wrong.status_code == 400
    assert 'href="#months">Choose one or two further months</a>' in wrong.text
    assert 'href="#reason">Write why you need more time: the requester is told</a>' in wrong.text
    check = console.post(base(request_id, "extend"), months="2", reason="forty stores")
    words = text(check.text)
    assert "Extend by 2 further months" in words
    assert "Due now 2026-04-02 09:00 UTC" in words and "Due after 2026-06-02 09:00 UTC" in words
    assert "An extension is allowed once (GDPR Art. 12(3))" in words
    done = console.post(base(request_id, "extend") + "/confirm", months="2",
                        reason="forty stores")
    assert done.status_code == 303
    extended = row(console, request_id)
    assert extended.due_at == add_months(extended.received_at, 3)  # 2 June
    assert extended.extension_reason == "forty stores"
    action, actor, details = last_event(console, request_id)
    assert (action, actor, details["months"]) == ("request.extended", f"officer:{reviewer.id}", 2)
    page = text(console.get(f"/console/requests/{request_id}").text)
    assert "Extended: the request is now due on 2026-06-02 09:00 UTC." in page
    assert "Extended 2026-03-02 09:00 UTC: forty stores" in page
    again = console.get(base(request_id, "extend"))
    assert again.status_code == 409
    assert ("The deadline cannot be extended: the deadline was extended already: Art. 12(3) "
            "allows it once.") in text(again.text)


@SQLITE
def test_no_extension_after_the_first_month(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    console.clock.advance(days=32)
    console.sign_in(reviewer)  # the session ended meanwhile
    for answer in (console.get(base(request_id, "extend")),
                   console.post(base(request_id, "extend"), months="1", reason="late"),
                   console.post(base(request_id, "extend") + "/confirm", months="1",
                                reason="late")):
        assert answer.status_code == 409
        assert "the first month has ended" in answer.text
    assert row(console, request_id).extended_at is None


# --- pause and resume -------------------------------------------------------------------

def test_pause_then_resume_moves_the_due_date(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    form = console.get(base(request_id, "pause"))
    assert "Proof of the requester&#39;s identity" in form.text
    none = console.post(base(request_id, "pause"))
    assert none.status_code == 400
    assert "Choose what you are waiting for from the requester" in none.text
    check = console.post(base(request_id, "pause"), waiting_for="identity",
                         note="asked for a utility bill")
    words = text(check.text)
    assert "Waiting for Proof of the requester's identity" in words
    assert ("The clock stops now. When you resume the request, its due date "
            "(2026-04-02 09:00 UTC) moves by the time it was paused.") in words
    assert "It returns to “awaiting review” when you resume it." in words
    assert console.post(base(request_id, "pause") + "/confirm", waiting_for="identity",
                        note="asked for a utility bill").status_code == 303
    paused = row(console, request_id)
    assert (paused.status, paused.paused_for) == ("paused", "identity")
    assert last_event(console, request_id)[:2] == ("request.paused", f"officer:{reviewer.id}")
    assert ("Paused since 2026-03-02 09:00 UTC, waiting for Proof of the requester's identity"
            in text(console.get(f"/console/requests/{request_id}").text))
    console.clock.advance(days=3)
    console.sign_in(reviewer)  # the session ended meanwhile (30 s further on)
    check = console.get(base(request_id, "resume"))  # no fields: the confirmation at once
    assert check.status_code == 200
    words = text(check.text)
    assert "Paused for 3 days 0 h 0 min" in words  # and 30 s
    assert "Due now 2026-04-02 09:00 UTC" in words and "Due after 2026-04-05 09:01 UTC" in words
    assert "returns to “awaiting review”" in words
    assert console.post(base(request_id, "resume") + "/confirm").status_code == 303
    resumed = row(console, request_id)
    assert resumed.status == "awaiting_review"
    assert resumed.due_at == add_months(resumed.received_at, 1) + timedelta(days=3, seconds=30)
    action, actor, details = last_event(console, request_id)
    assert (action, actor, details["paused_seconds"]) == (
        "request.resumed", f"officer:{reviewer.id}", 259230.0)
    assert console.get(base(request_id, "resume")).status_code == 409
    assert "Paused since" not in text(console.get(f"/console/requests/{request_id}").text)


# --- retry and cancel -------------------------------------------------------------------

@SQLITE
def test_retry_the_failed_tasks(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console, "access")  # no store: completed at once
    with console.rt.transaction() as session:
        found = flow.get(session, request_id)
        found.status, found.closed_at = "partially_failed", START
        session.add(Task(request_id=request_id, connector="crm", step="export",
                         status="failed", attempts=3, last_error="down"))
    check = console.get(base(request_id, "retry"))
    words = text(check.text)
    assert "Failed tasks crm (export)" in words
    assert "1 failed task run again; the request is processing until they end." in words
    assert console.post(base(request_id, "retry") + "/confirm").status_code == 303
    assert row(console, request_id).status == "processing"
    action, actor, details = last_event(console, request_id)
    assert (action, actor, details["retried_tasks"]) == (
        "request.processing", f"officer:{reviewer.id}", 1)


@SQLITE
def test_cancel_with_a_reason(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    missing = console.post(base(request_id, "cancel"), reason=" ")
    assert missing.status_code == 400
    assert 'href="#reason">Write why the request is cancelled</a>' in missing.text
    check = console.post(base(request_id, "cancel"), reason="withdrawn by phone")
    words = text(check.text)
    assert "Reason withdrawn by phone" in words
    assert "The request ends: it cannot be resumed or retried afterwards." in words
    done = console.post(base(request_id, "cancel") + "/confirm",
                        reason="withdrawn by phone\r\non 2 March ")  # a browser's line end
    assert done.status_code == 303
    cancelled = row(console, request_id)
    assert (cancelled.status, cancelled.status_reason) == ("cancelled",
                                                           "withdrawn by phone\non 2 March")
    assert last_event(console, request_id)[:2] == ("request.cancelled", f"officer:{reviewer.id}")


# --- refusals -----------------------------------------------------------------------------

@SQLITE
@pytest.mark.parametrize(("action", "values", "said"), [
    ("deny", {"template": "identity"}, "the reason"),
    ("extend", {"months": "1", "reason": "x"}, "the new date and your reason"),
    ("pause", {"waiting_for": "identity"}, "that we wait for their identity or a "
                                           "clarification (not your note)"),
    ("cancel", {"reason": "x"}, "that it was cancelled (not your reason)"),
])
def test_the_confirmation_says_what_the_requester_is_mailed(
        console: Console, reviewer: Officer, action: str, values: dict[str, str],
        said: str) -> None:
    """dsar/workflow/notices.py: only to the address the requester verified."""
    request_id = new_request(console)
    words = text(console.post(base(request_id, action), **values).text)
    assert f"We email the requester, at the address they verified, {said}." in words
    with console.rt.transaction() as session:
        unverified = verification.receive(session, console.rt, "erasure", "bo@example.org")
        unverified_id = unverified.request.id
    if action in ("pause", "cancel"):  # the others need a verified request
        words = text(console.post(base(unverified_id, action), **values).text)
        assert "We email the requester nothing: nobody verified the address." in words


@SQLITE
def test_the_resume_confirmation_says_the_requester_is_mailed(console: Console,
                                                              reviewer: Officer) -> None:
    request_id = new_request(console)
    with console.rt.transaction() as session:
        flow.pause(session, console.rt, flow.get(session, request_id), actor="operator:test",
                   waiting_for="identity")
    words = text(console.get(base(request_id, "resume")).text)
    assert "We email the requester, at the address they verified, the new date." in words


@SQLITE
@pytest.mark.parametrize(("action", "values", "said"), [
    ("approve", {}, "This request is cancelled: it cannot be approved now."),
    ("deny", {"template": "identity"}, "This request is cancelled: it cannot be denied now."),
    ("extend", {"months": "1", "reason": "x"},
     "a request that is cancelled cannot have its deadline extended"),
    ("pause", {"waiting_for": "identity"}, "This request is cancelled: it cannot be paused now."),
    ("resume", {}, "This request is cancelled: it cannot be resumed now."),
    ("retry", {}, "This request is cancelled: it cannot be retried now."),
    ("cancel", {"reason": "x"}, "This request is cancelled: it cannot be cancelled now."),
])
def test_a_state_that_forbids_the_action_is_409_at_each_step(
        console: Console, reviewer: Officer, action: str, values: dict[str, str],
        said: str) -> None:
    request_id = new_request(console)
    with console.rt.transaction() as session:
        flow.cancel(session, console.rt, flow.get(session, request_id), actor="operator:test",
                    reason="gone")
    before = events_of(console, request_id)
    for answer in (console.get(base(request_id, action)),
                   console.post(base(request_id, action), **values),
                   console.post(base(request_id, action) + "/confirm", **values)):
        assert answer.status_code == 409, action
        assert "That cannot be done now" in answer.text and said in text(answer.text)
        assert "Nothing was changed." in answer.text
        assert f'<a href="/console/requests/{request_id}">Back to the request</a>' in answer.text
    assert events_of(console, request_id) == before


@SQLITE
def test_the_state_changed_between_the_confirmation_and_the_confirm(
        console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    assert console.post(base(request_id, "approve")).status_code == 200
    with console.rt.transaction() as session:  # another officer denied it meanwhile
        flow.deny(session, console.rt, flow.get(session, request_id), actor="officer:other",
                  reason="no")
    late = console.post(base(request_id, "approve") + "/confirm")
    assert late.status_code == 409
    assert "This request is denied: it cannot be approved now." in text(late.text)


@SQLITE
def test_only_an_erasure_is_approved(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console, "access")
    answer = console.get(base(request_id, "approve"))
    assert answer.status_code == 409
    assert "This is an access request: only an erasure is approved." in text(answer.text)


@SQLITE
def test_an_unknown_request_is_404(console: Console, reviewer: Officer) -> None:
    assert console.get(base("f" * 32, "approve")).status_code == 404
    assert console.get(base("not-an-id", "approve")).status_code == 404
    assert console.post(base("f" * 32, "cancel") + "/confirm", reason="x").status_code == 404


@SQLITE
def test_an_auditor_reads_but_does_not_act(console: Console) -> None:
    console.officer("audrey@example.org", "auditor")
    request_id = new_request(console)
    for action in ("approve", "deny", "extend", "pause", "cancel"):
        assert console.get(base(request_id, action)).status_code == 403
        assert console.post(base(request_id, action) + "/confirm",
                            reason="x", template="identity", months="1",
                            waiting_for="identity").status_code == 403
    assert row(console, request_id).status == "awaiting_review"
    page = console.get(f"/console/requests/{request_id}")
    assert page.status_code == 200 and "Approve the erasure" not in page.text


@SQLITE
def test_the_request_page_offers_what_the_state_allows(console: Console,
                                                       reviewer: Officer) -> None:
    request_id = new_request(console)
    page = console.get(f"/console/requests/{request_id}").text
    for action in ("approve", "deny", "extend", "pause", "cancel"):
        assert f'href="/console/requests/{request_id}/{action}"' in page
    for action in ("resume", "retry"):
        assert f'href="/console/requests/{request_id}/{action}"' not in page


@SQLITE
def test_csrf_is_refused(console: Console, reviewer: Officer) -> None:
    request_id = new_request(console)
    for path in (base(request_id, "cancel"), base(request_id, "cancel") + "/confirm"):
        answer = console.client.post(path, data={"reason": "no token"})
        assert answer.status_code == 400 and "The form had expired" in answer.text
        forged = console.client.post(path, data={"reason": "x", "csrf_token": "forged"})
        assert forged.status_code == 400
    assert row(console, request_id).status == "awaiting_review"
