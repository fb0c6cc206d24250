"""The officer's actions on ``dsar requests``: extend, pause and resume beside
approve, deny, cancel and retry, each as the operator account or, with ``--as
EMAIL``, as an active reviewer or admin, who the audit trail names by id."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.models import AuditEvent, ErasurePreview, Officer, OfficerStatus, Task
from dsar.officers import accounts
from dsar.runtime import Runtime
from dsar.workflow import requests as flow

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

RECEIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(rt: Runtime) -> MovableClock:
    rt.clock = MovableClock(RECEIVED)
    return rt.clock


def officer(rt: Runtime, email: str, role: str, status: str = OfficerStatus.ACTIVE) -> str:
    """An officer account in ``status`` (set up is the sign-in's business, not the CLI's)."""
    with rt.transaction() as session:
        invitation = accounts.create(session, rt, email, role, actor="operator:test")
        found = session.get(Officer, invitation.officer_id)
        assert found is not None
        found.status = status
        return invitation.officer_id


def erasure(rt: Runtime) -> str:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "erasure", {"email": ["ann@example.org"]})
        flow.mark_verified(session, rt, request, actor="operator:test", method="out-of-band")
        return request.id


def last_event(rt: Runtime, request_id: str) -> tuple[str, str, dict[str, object]]:
    with rt.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)
                                .order_by(AuditEvent.seq.desc())).first()
        assert event is not None
        return event.action, event.actor, json.loads(event.details)


def show(cli: Callable[..., Result], request_id: str) -> dict[str, object]:
    result = cli("requests", "show", request_id, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_extend_as_a_reviewer(cli: Callable[..., Result], rt: Runtime,
                              clock: MovableClock) -> None:
    rita = officer(rt, "rita@example.org", "reviewer")
    request_id = erasure(rt)
    clock.advance(days=20)
    result = cli("requests", "extend", request_id, "--months", "2", "--reason", "forty stores",
                 "--as", "rita@example.org")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"{request_id} awaiting_review due "
                                     "2026-06-02T09:00:00+00:00")
    action, actor, details = last_event(rt, request_id)
    assert (action, actor) == ("request.extended", f"officer:{rita}")
    assert details["reason"] == "forty stores"
    again = cli("requests", "extend", request_id, "--months", "1", "--reason", "more")
    assert again.exit_code == 1
    assert "Error: the deadline was extended already: Art. 12(3) allows it once" in again.output


@pytest.mark.parametrize("months", ["0", "3"])
def test_extend_is_by_one_or_two_months(cli: Callable[..., Result], rt: Runtime,
                                        clock: MovableClock, months: str) -> None:
    request_id = erasure(rt)
    result = cli("requests", "extend", request_id, "--months", months, "--reason", "x")
    assert result.exit_code == 2 and "--months" in result.output


def test_no_extension_after_the_first_month(cli: Callable[..., Result], rt: Runtime,
                                            clock: MovableClock) -> None:
    request_id = erasure(rt)
    clock.advance(days=31, seconds=1)
    result = cli("requests", "extend", request_id, "--months", "1", "--reason", "late")
    assert result.exit_code == 1 and "the first month has ended" in result.output


def test_pause_and_resume_as_the_operator(cli: Callable[..., Result], rt: Runtime,
                                          clock: MovableClock) -> None:
    request_id = erasure(rt)
    paused = cli("requests", "pause", request_id, "--waiting-for", "clarification",
                 "--note", "asked which account")
    assert paused.exit_code == 0 and paused.output.strip() == f"{request_id} paused"
    action, actor, details = last_event(rt, request_id)
    assert action == "request.paused" and actor.startswith("operator:")
    assert details["waiting_for"] == "clarification"
    clock.advance(days=3)
    resumed = cli("requests", "resume", request_id)
    assert resumed.exit_code == 0
    assert resumed.output.strip() == (f"{request_id} awaiting_review due "
                                      "2026-04-05T09:00:00+00:00")
    assert show(cli, request_id)["status"] == "awaiting_review"
    twice = cli("requests", "resume", request_id)
    assert twice.exit_code == 1
    assert "a request that is awaiting_review cannot become resumed" in twice.output


def test_pause_waits_for_identity_or_clarification(cli: Callable[..., Result], rt: Runtime,
                                                   clock: MovableClock) -> None:
    request_id = erasure(rt)
    result = cli("requests", "pause", request_id, "--waiting-for", "payment")
    assert result.exit_code == 2 and "--waiting-for" in result.output


def test_approve_a_failed_preview_needs_a_reason(cli: Callable[..., Result], rt: Runtime,
                                                 clock: MovableClock) -> None:
    adam = officer(rt, "adam@example.org", "admin")
    request_id = erasure(rt)
    with rt.transaction() as session:
        session.add(ErasurePreview(request_id=request_id, requested_at=RECEIVED,
                                   requested_by="system", computed_at=RECEIVED, identifiers=1,
                                   stores=json.dumps([{"connector": "crm", "error": "down"}])))
    refused = cli("requests", "approve", request_id, "--as", "adam@example.org")
    assert refused.exit_code == 1
    assert ("Error: the erasure preview failed for crm: approving anyway needs a reason"
            in refused.output)
    done = cli("requests", "approve", request_id, "--as", "adam@example.org",
               "--reason", "crm holds no customers")
    assert done.exit_code == 0, done.output
    with rt.transaction() as session:
        approved = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == request_id, AuditEvent.action == "request.approved")).one()
        assert approved.actor == f"officer:{adam}"
        assert json.loads(approved.details)["preview_failed"] == ["crm"]


def test_deny_with_a_template_as_an_officer(cli: Callable[..., Result], rt: Runtime,
                                            clock: MovableClock) -> None:
    rita = officer(rt, "rita@example.org", "reviewer")
    request_id = erasure(rt)
    unknown = cli("requests", "deny", request_id, "--template", "whim")
    assert unknown.exit_code == 2
    assert "--template: one of legal_obligation, legal_claims, identity, unfounded" in \
        unknown.output
    neither = cli("requests", "deny", request_id)
    assert neither.exit_code == 1 and "Error: a denial needs a reason" in neither.output
    done = cli("requests", "deny", request_id, "--template", "legal_claims", "--reason",
               "A claim is open.", "--as", "rita@example.org")
    assert done.exit_code == 0 and done.output.strip() == f"{request_id} denied"
    assert show(cli, request_id)["status_reason"] == (
        "We need this data to establish, exercise or defend legal claims (GDPR Art. "
        "17(3)(e)). A claim is open.")
    assert last_event(rt, request_id)[:2] == ("request.denied", f"officer:{rita}")


def test_cancel_and_retry_as_an_officer(cli: Callable[..., Result], rt: Runtime,
                                        clock: MovableClock) -> None:
    rita = officer(rt, "rita@example.org", "reviewer")
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": ["ann@example.org"]})
        request.status, request_id = "partially_failed", request.id
        session.add(Task(request_id=request_id, connector="crm", step="export",
                         status="failed", attempts=3))
    retried = cli("requests", "retry", request_id, "--as", "rita@example.org")
    assert retried.exit_code == 0 and retried.output.strip() == f"{request_id} processing"
    assert last_event(rt, request_id)[:2] == ("request.processing", f"officer:{rita}")
    cancelled = cli("requests", "cancel", request_id, "--reason", "withdrawn",
                    "--as", "rita@example.org")
    assert cancelled.exit_code == 0
    with rt.transaction() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == request_id, AuditEvent.action == "request.cancelled")).one()
        assert event.actor == f"officer:{rita}"


@pytest.mark.parametrize(("role", "status", "said"), [
    ("auditor", OfficerStatus.ACTIVE, "this needs the role admin or reviewer; the officer is "
                                      "auditor"),
    ("reviewer", OfficerStatus.DISABLED, "no active officer with this email address"),
    ("reviewer", OfficerStatus.INVITED, "no active officer with this email address"),
])
def test_as_needs_an_active_reviewer_or_admin(cli: Callable[..., Result], rt: Runtime,
                                              clock: MovableClock, role: str, status: str,
                                              said: str) -> None:
    officer(rt, "olga@example.org", role, status)
    request_id = erasure(rt)
    for args in (["pause", request_id, "--waiting-for", "identity"],
                 ["extend", request_id, "--months", "1", "--reason", "x"],
                 ["cancel", request_id, "--reason", "x"], ["approve", request_id],
                 ["deny", request_id, "--reason", "x"]):
        result = cli("requests", *args, "--as", "olga@example.org")
        assert result.exit_code == 1 and f"Error: {said}" in result.output, args
    assert show(cli, request_id)["status"] == "awaiting_review"
    unknown = cli("requests", "resume", request_id, "--as", "nobody@example.org")
    assert unknown.exit_code == 1 and "no active officer" in unknown.output


def test_the_due_date_is_shown_moved(cli: Callable[..., Result], rt: Runtime,
                                     clock: MovableClock) -> None:
    request_id = erasure(rt)
    cli("requests", "pause", request_id, "--waiting-for", "identity")
    clock.advance(timedelta(hours=36))
    cli("requests", "resume", request_id)
    assert show(cli, request_id)["due_at"] == "2026-04-03T21:00:00+00:00"
