"""dsar/workflow/verification.py and erasure.py where `make mutate` found them loose: the
audit trail of wrong codes and of a verification (who, which attempt, which method), the
wait a refused resend names to the second, the refusals' keys, and the result an erasure
records. The runtime's clock is moved, never slept past."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import select

from dsar.clock import MovableClock
from dsar.connector import Subject
from dsar.models import AuditEvent
from dsar.runtime import Runtime
from dsar.workflow import erasure, verification
from dsar.workflow import requests as flow
from tests.support.engine_connectors import Script
from tests.support.queued import Mail, queued

SENT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CODE, WRONG = "123456", "654321"


@pytest.fixture
def clock(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    monkeypatch.setattr(verification, "new_code", lambda: CODE)
    moving = rt.clock = MovableClock(SENT)
    return moving


def received(rt: Runtime) -> tuple[str, str]:
    with rt.transaction() as session:
        started = verification.receive(session, rt, "access", "a@example.org")
        return started.request.id, started.status_token


def events(rt: Runtime, *actions: str) -> list[tuple[str, str, dict[str, object]]]:
    with rt.transaction() as session:
        return [(e.action, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.seq))]


def check(rt: Runtime, request_id: str, code: str) -> verification.VerificationError | None:
    with rt.transaction() as session:
        try:
            verification.check(session, rt, flow.get(session, request_id), code)
        except verification.VerificationError as refused:
            return refused
    return None


def test_wrong_codes_and_the_right_one_are_recorded_with_who_and_how(
        rt: Runtime, clock: MovableClock) -> None:
    request_id, _ = received(rt)
    first, second = check(rt, request_id, WRONG), check(rt, request_id, WRONG)
    assert isinstance(first, verification.WrongCode) and first.params == {"left": 4}
    assert isinstance(second, verification.WrongCode) and second.params == {"left": 3}
    assert (first.key, str(first)) == ("verify.wrong_code", "verify.wrong_code")
    assert check(rt, request_id, f" {CODE} ") is None
    assert events(rt, "verification.failed", "request.verified") == [
        ("verification.failed", "requester", {"attempt": 1, "holder": "submitter"}),
        ("verification.failed", "requester", {"attempt": 2, "holder": "submitter"}),
        ("request.verified", "requester", {"from": "verifying", "method": "email-code"}),
    ]


def test_a_refused_resend_names_the_seconds_left_rounded_up(
        rt: Runtime, clock: MovableClock) -> None:
    request_id, token = received(rt)
    clock.advance(seconds=30)
    with rt.transaction() as session:
        with pytest.raises(verification.ResendTooSoon) as refused:
            verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    assert refused.value.params == {"seconds": 31}
    assert (refused.value.key, str(refused.value)) == ("resend.cooldown", "resend.cooldown")
    clock.advance(seconds=29.5)
    with rt.transaction() as session:
        with pytest.raises(verification.ResendTooSoon) as refused:
            verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    assert refused.value.params == {"seconds": 1}
    clock.advance(seconds=0.5)
    with rt.transaction() as session:
        verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    assert [details for *_, details in events(rt, "verification.code_sent")] == [
        {"send": 1}, {"send": 2}]


def test_a_new_request_gets_a_43_character_token_from_the_system(
        rt: Runtime, clock: MovableClock) -> None:
    request_id, token = received(rt)
    assert len(token) == 43  # 32 random bytes, URL-safe base64
    assert events(rt, "request.verifying") == [("request.verifying", "system",
                                                {"from": "received"})]


def test_a_request_not_waiting_for_a_code_says_so(rt: Runtime, clock: MovableClock) -> None:
    request_id, token = received(rt)
    assert check(rt, request_id, CODE) is None
    refused = check(rt, request_id, CODE)
    assert isinstance(refused, verification.NotWaiting)
    assert (refused.key, str(refused), refused.params) == \
        ("verify.not_waiting", "verify.not_waiting", {})


def test_an_erasure_records_its_plan_and_counts(make_app: Callable[..., Flask],
                                                scripts: dict[str, Script]) -> None:
    scripts["crm"] = Script()
    scripts["crm"].seed("a@example.org", 3)
    scripts["crm"].holds = {"a@example.org-0"}
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"}}).extensions["dsar"]
    outcome = erasure.run(rt.connectors["crm"], Subject({"email": ["a@example.org"]}))
    assert (outcome.ok, outcome.records, outcome.error) == (True, 3, "")
    assert outcome.result == {
        "plan": {"delete": 2, "mask": 0, "keep": 1}, "deleted": 2, "masked": 0, "kept": 1,
        "holds": ["tax-law: invoices kept 10 years"], "held": {"tax-law": 1}}


def test_an_unverified_erasure_names_what_remains_and_where(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    scripts["crm"] = Script()
    scripts["crm"].seed("a@example.org", 1, "orders")
    scripts["crm"].seed("b@example.org", 1, "items")
    scripts["crm"].leave_behind = 2  # the store says it erased them; both are still there
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"}}).extensions["dsar"]
    outcome = erasure.run(rt.connectors["crm"],
                          Subject({"email": ["a@example.org", "b@example.org"]}))
    assert (outcome.ok, outcome.records) == (False, 2)
    assert outcome.result == {"plan": {"delete": 2, "mask": 0, "keep": 0}, "deleted": 0,
                              "masked": 0, "kept": 0, "holds": [], "held": {}}
    assert outcome.error == ("erasure not verified: 2 records remain that no hold keeps "
                             "(in items, orders)")


def mails(rt: Runtime) -> list[Mail]:
    """The outbox: kind, recipient, subject, body (decrypted with the outbox's contexts)."""
    return queued(rt)


def test_the_code_mail_goes_to_the_normalised_address_with_the_status_link(
        rt: Runtime, clock: MovableClock) -> None:
    rt.settings["BASE_URL"] = "https://dsar.example.org/"
    with rt.transaction() as session:
        started = verification.receive(session, rt, "access", " Ann@Example.ORG ",
                                       name="Ann", message="all of it")
        request_id, token = started.request.id, started.status_token
        stored = json.loads(rt.crypto.decrypt_text(started.request.details_ct or b"",
                                                   "request:details"))
    assert stored == {"name": "Ann", "message": "all of it"}
    [(kind, to, subject, body)] = mails(rt)
    assert (kind, to, subject) == ("verification-code", "ann@example.org",
                                   "Your verification code")  # no code: lock screens show it
    assert f"\n    {CODE}\n" in body
    link = re.search(rf"https://dsar\.example\.org/requests/{request_id}\?token=([\w-]+)", body)
    assert link and link.group(1) != token  # the mail's own token, not the submitter's
    with rt.transaction() as session:
        held = verification.find_token(session, rt, request_id, link.group(1))
        assert held is not None and held.holder == "mail"
    assert "15 minutes" in body  # CODE_TTL_SECONDS, 900
    clock.advance(minutes=2)
    with rt.transaction() as session:
        verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    assert [m[:2] for m in mails(rt)] == [("verification-code", "ann@example.org"),
                                          ("verification-code-resend", "ann@example.org")]
    assert [actor for _, actor, _ in events(rt, "request.received")] == ["requester"]
    assert [actor for _, actor, _ in events(rt, "verification.code_sent")] == ["system"] * 2
